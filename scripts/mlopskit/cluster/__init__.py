"""A throwaway single-node Kubernetes made from Debian packages only (``make cluster``).

Modules: ``config`` (addresses, paths, ports: one place), ``build`` (server binaries from
bookworm's ``kubernetes`` source package, cached outside the work tree), ``pki`` (certificates),
``host`` (bridges, routes, iptables, sysctls saved and restored), ``node`` (the processes),
``dns`` (dnsmasq fed from the Services), ``addons`` (StorageClass, volumes, profiles),
``cli`` (``mlopskit cluster up|down|status|build``).
"""
