"""The end-to-end run shares no fixtures across modules: each module owns its environment
(e2e, e2e-sftp, e2e-bad) and cleans it up. The helpers live in e2e_support.py."""
