{{/* Names, labels, images, security contexts and the images' contract, shared by every template. */}}

{{- define "mlops-kit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlops-kit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Component resource names; the full name is cut to 40 characters so suffixes fit in 63. */}}
{{- define "mlops-kit.mlflow.fullname" -}}{{ include "mlops-kit.fullname" . }}-mlflow{{- end -}}
{{- define "mlops-kit.postgresql.fullname" -}}{{ include "mlops-kit.fullname" . }}-postgresql{{- end -}}
{{- define "mlops-kit.sftp.fullname" -}}{{ include "mlops-kit.fullname" . }}-sftp{{- end -}}

{{- define "mlops-kit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlops-kit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops-kit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlops-kit.labels" -}}
helm.sh/chart: {{ include "mlops-kit.chart" . }}
{{ include "mlops-kit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-kit
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: include "mlops-kit.componentLabels" (dict "ctx" $ "component" "mlflow") */}}
{{- define "mlops-kit.componentLabels" -}}
{{ include "mlops-kit.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlops-kit.componentSelectorLabels" -}}
{{ include "mlops-kit.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlops-kit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mlops-kit.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" in OpenShift mode: forced by openshift.enabled, or detected from the Route API. */}}
{{- define "mlops-kit.openshift" -}}
{{- $mode := toString .Values.openshift.enabled -}}
{{- if eq $mode "true" -}}
true
{{- else if and (eq $mode "auto") (.Capabilities.APIVersions.Has "route.openshift.io/v1") -}}
true
{{- end -}}
{{- end -}}

{{/* Image reference: include "mlops-kit.image" (dict "ctx" $ "image" .Values.mlflow.image) */}}
{{- define "mlops-kit.image" -}}
{{- $repository := .image.repository -}}
{{- with .ctx.Values.imageRegistry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "mlops-kit.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Pod security context. restricted-v2 assigns the UID and fsGroup from the namespace range, so in
OpenShift mode none is set; on plain Kubernetes a non-root UID with group 0 fits the images.
OnRootMismatch keeps the kubelet from re-chmodding PostgreSQL's 0700 data directory on restart.
*/}}
{{- define "mlops-kit.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
fsGroupChangePolicy: OnRootMismatch
{{- if not (include "mlops-kit.openshift" .) }}
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
{{- end }}
{{- end -}}

{{- define "mlops-kit.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* ---------- PostgreSQL connection, bundled or external ---------- */}}

{{- define "mlops-kit.db.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "mlops-kit.postgresql.fullname" . -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "mlops-kit.db.port" -}}
{{- ternary 5432 .Values.externalDatabase.port .Values.postgresql.enabled -}}
{{- end -}}

{{- define "mlops-kit.db.user" -}}
{{- ternary .Values.postgresql.auth.username .Values.externalDatabase.user .Values.postgresql.enabled -}}
{{- end -}}

{{- define "mlops-kit.db.name" -}}
{{- ternary .Values.postgresql.auth.database .Values.externalDatabase.database .Values.postgresql.enabled -}}
{{- end -}}

{{- define "mlops-kit.db.authName" -}}
{{- ternary .Values.postgresql.auth.authDatabase .Values.externalDatabase.authDatabase .Values.postgresql.enabled -}}
{{- end -}}

{{- define "mlops-kit.postgresql.secretName" -}}
{{- default (printf "%s-postgresql" (include "mlops-kit.fullname" .)) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{/* Secret and key holding the application user's password. */}}
{{- define "mlops-kit.db.secretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "mlops-kit.postgresql.secretName" . -}}
{{- else -}}
{{- required "externalDatabase.existingSecret is required when postgresql.enabled is false: create a Secret holding the database password" .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "mlops-kit.db.secretKey" -}}
{{- ternary "password" .Values.externalDatabase.existingSecretPasswordKey .Values.postgresql.enabled -}}
{{- end -}}

{{/* ---------- SFTP endpoint, bundled or external ---------- */}}

{{- define "mlops-kit.sftp.host" -}}
{{- if .Values.sftp.enabled -}}
{{- include "mlops-kit.sftp.fullname" . -}}
{{- else -}}
{{- required "externalSftp.host is required when sftp.enabled is false" .Values.externalSftp.host -}}
{{- end -}}
{{- end -}}

{{- define "mlops-kit.sftp.port" -}}
{{- ternary .Values.sftp.service.port .Values.externalSftp.port .Values.sftp.enabled -}}
{{- end -}}

{{- define "mlops-kit.sftp.username" -}}
{{- ternary .Values.sftp.username .Values.externalSftp.username .Values.sftp.enabled -}}
{{- end -}}

{{/* The bundled server's data root is the image default /data (images/README.md). */}}
{{- define "mlops-kit.sftp.artifactsPath" -}}
{{- ternary "/data/artifacts" .Values.externalSftp.artifactsPath .Values.sftp.enabled -}}
{{- end -}}

{{- define "mlops-kit.sftp.dvcPath" -}}
{{- ternary "/data/dvc" .Values.externalSftp.dvcPath .Values.sftp.enabled -}}
{{- end -}}

{{- define "mlops-kit.sftp.artifactsUri" -}}
{{- printf "sftp://%s@%s:%v%s" (include "mlops-kit.sftp.username" .) (include "mlops-kit.sftp.host" .) (include "mlops-kit.sftp.port" .) (include "mlops-kit.sftp.artifactsPath" .) -}}
{{- end -}}

{{- define "mlops-kit.sftp.hostKeysSecretName" -}}
{{- default (printf "%s-host-keys" (include "mlops-kit.sftp.fullname" .)) .Values.sftp.hostKeys.existingSecret -}}
{{- end -}}

{{- define "mlops-kit.sftpClientKey.secretName" -}}
{{- default (printf "%s-sftp-client" (include "mlops-kit.mlflow.fullname" .)) .Values.mlflow.sftpClientKey.existingSecret -}}
{{- end -}}

{{- define "mlops-kit.mlflow.authSecretName" -}}
{{- default (printf "%s-auth" (include "mlops-kit.mlflow.fullname" .)) .Values.mlflow.auth.existingSecret -}}
{{- end -}}

{{- define "mlops-kit.metrics.secretName" -}}
{{- default (printf "%s-metrics" (include "mlops-kit.mlflow.fullname" .)) .Values.mlflow.metrics.existingSecret -}}
{{- end -}}

{{- define "mlops-kit.people.secretName" -}}
{{- printf "%s-people" (include "mlops-kit.mlflow.fullname" .) -}}
{{- end -}}

{{- define "mlops-kit.tests.secretName" -}}
{{- printf "%s-tests" (include "mlops-kit.fullname" .) -}}
{{- end -}}

{{/* ---------- People (values `people`) ---------- */}}

{{/* The MLflow account `helm test` checks a reader with; listed with the people when
     tests.accounts is on (a reader: it can read, never write). */}}
{{- define "mlops-kit.tests.readerName" -}}helm-test-reader{{- end -}}

{{/* "true" when the metrics account exists: auth and metrics on. */}}
{{- define "mlops-kit.metrics.account" -}}
{{- if and .Values.mlflow.auth.enabled .Values.mlflow.metrics.enabled -}}true{{- end -}}
{{- end -}}

{{/* "true" when the test accounts exist (they need auth for the reader and the bundled SFTP for
     the keys; each is used only where it exists). */}}
{{- define "mlops-kit.tests.accounts" -}}
{{- if .Values.tests.accounts -}}true{{- end -}}
{{- end -}}

{{/* Checks of the people list the schema cannot express; fails the render with the fix. */}}
{{- define "mlops-kit.people.validate" -}}
{{- $seen := dict -}}
{{- $reserved := list .Values.mlflow.auth.adminUsername .Values.mlflow.metrics.username (include "mlops-kit.tests.readerName" .) "mlflow" -}}
{{- range .Values.people -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "people: %q is listed more than once; each person needs one entry with a unique name" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- if has .name $reserved -}}
{{- fail (printf "people: the name %q is reserved for the platform's own accounts (%s); choose another name" .name (join ", " $reserved)) -}}
{{- end -}}
{{- if and (ne (default "none" .dvc) "none") (not .publicKey) -}}
{{- fail (printf "people: %s has dvc %s but no publicKey: add their OpenSSH public key (make deploy generates one) or set dvc: none" .name .dvc) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* people.json for MLFLOW_PEOPLE_DIR: the people (and the test reader), name and role. */}}
{{- define "mlops-kit.people.json" -}}
{{- $accounts := list -}}
{{- range .Values.people -}}
{{- $accounts = append $accounts (dict "name" .name "role" .mlflow) -}}
{{- end -}}
{{- if include "mlops-kit.tests.accounts" . -}}
{{- $accounts = append $accounts (dict "name" (include "mlops-kit.tests.readerName" .) "role" "reader") -}}
{{- end -}}
{{- toJson $accounts -}}
{{- end -}}

{{/* What MLflow's checksum/people annotation hashes: the people, their passwords (the chart's
     Secret, and each person's existingSecret as the cluster holds it now). */}}
{{- define "mlops-kit.people.checksumInput" -}}
{{- toJson .Values.people -}}
{{- if .Values.mlflow.auth.enabled -}}
{{- include "mlops-kit.people.secretData" . -}}
{{- range .Values.people -}}
{{- if .existingSecret -}}
{{- $live := lookup "v1" "Secret" $.Release.Namespace .existingSecret -}}
{{- (get ($live | default dict) "data") | default dict | toJson -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The SFTP access list of the people: one ConfigMap key per person, lines
     "<area> <ro|rw> <key>", all with the person's publicKey (the image merges a key's lines,
     each area with its own mode): the DVC area by dvc, and with direct artifacts
     (serveArtifacts false) the artifact area by role (ro for readers, rw for editors and
     admins). No person reaches the artifact area when MLflow proxies artifacts. */}}
{{- define "mlops-kit.sftp.peopleAccess" -}}
{{- $direct := not .Values.mlflow.serveArtifacts -}}
{{- $access := dict -}}
{{- range .Values.people -}}
{{- $lines := list -}}
{{- $dvc := default "none" .dvc -}}
{{- if and (ne $dvc "none") .publicKey -}}
{{- $lines = append $lines (printf "dvc %s %s" (ternary "rw" "ro" (eq $dvc "write")) (trim .publicKey)) -}}
{{- end -}}
{{- if and $direct .publicKey -}}
{{- $lines = append $lines (printf "artifacts %s %s" (ternary "ro" "rw" (eq .mlflow "reader")) (trim .publicKey)) -}}
{{- end -}}
{{- if $lines -}}
{{- $_ := set $access .name (join "\n" $lines) -}}
{{- end -}}
{{- end -}}
{{- toJson $access -}}
{{- end -}}


{{/* ---------- API versions the server serves ---------- */}}

{{/* policy/v1 PodDisruptionBudget from Kubernetes 1.21, policy/v1beta1 before (both on install:
the server's APIs and version; `helm template`: --kube-version/--api-versions). */}}
{{- define "mlops-kit.pdb.apiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* autoscaling/v2 HorizontalPodAutoscaler from Kubernetes 1.23, autoscaling/v2beta2 before
(the same fields). */}}
{{- define "mlops-kit.hpa.apiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "autoscaling/v2") (semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version) -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{/* ---------- MLflow host names ---------- */}}

{{/* The Route host: set, or <fullname>-<namespace>.<apps domain> from the cluster's ingress config. */}}
{{- define "mlops-kit.route.host" -}}
{{- if .Values.mlflow.route.host -}}
{{- .Values.mlflow.route.host -}}
{{- else -}}
{{- $ingressConfig := dict -}}
{{- if .Values.mlflow.route.lookupDomain -}}
{{- $ingressConfig = lookup "config.openshift.io/v1" "Ingress" "" "cluster" -}}
{{- end -}}
{{- $domain := dig "spec" "domain" "" ($ingressConfig | default dict) -}}
{{- if not $domain -}}
{{- fail "mlflow.route.host is required: the cluster's apps domain could not be read (set it, e.g. mlflow.apps.example.com)" -}}
{{- end -}}
{{- printf "%s-%s.%s" (include "mlops-kit.mlflow.fullname" .) .Release.Namespace $domain -}}
{{- end -}}
{{- end -}}

{{/* "true" when a Route is rendered, "true" when an Ingress is rendered. */}}
{{- define "mlops-kit.route.enabled" -}}
{{- if and .Values.mlflow.route.enabled (include "mlops-kit.openshift" .) -}}true{{- end -}}
{{- end -}}

{{- define "mlops-kit.ingress.enabled" -}}
{{- if and .Values.mlflow.ingress.enabled (not (include "mlops-kit.openshift" .)) -}}true{{- end -}}
{{- end -}}

{{/* Host header names MLflow accepts: its Service names, the Ingress/Route host and extras. */}}
{{- define "mlops-kit.mlflow.allowedHosts" -}}
{{- $svc := include "mlops-kit.mlflow.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) -}}
{{- if include "mlops-kit.ingress.enabled" . -}}
{{- $hosts = append $hosts (required "mlflow.ingress.host is required when mlflow.ingress.enabled is true" .Values.mlflow.ingress.host) -}}
{{- end -}}
{{- if include "mlops-kit.route.enabled" . -}}
{{- $hosts = append $hosts (include "mlops-kit.route.host" .) -}}
{{- end -}}
{{- $hosts = concat $hosts .Values.mlflow.extraAllowedHosts -}}
{{- if .Values.mlflow.allowPrivateIPHosts -}}
{{- $hosts = concat $hosts (list "10.*" "192.168.*") -}}
{{- range $i := untilStep 16 32 1 -}}
{{- $hosts = append $hosts (printf "172.%d.*" $i) -}}
{{- end -}}
{{- $hosts = concat $hosts (list "fc00:*" "fd00:*") -}}
{{- end -}}
{{- join "," (uniq $hosts) -}}
{{- end -}}

{{/* ---------- The MLflow image's contract (images/README.md) ---------- */}}

{{/* Environment of the server and of its migration step: the same settings, so `migrate`
     validates exactly what the server will run with. Secrets arrive as *_FILE paths. */}}
{{- define "mlops-kit.mlflow.env" -}}
- name: MLFLOW_DB_HOST
  value: {{ include "mlops-kit.db.host" . | quote }}
- name: MLFLOW_DB_PORT
  value: {{ include "mlops-kit.db.port" . | quote }}
- name: MLFLOW_DB_USER
  value: {{ include "mlops-kit.db.user" . | quote }}
- name: MLFLOW_DB_NAME
  value: {{ include "mlops-kit.db.name" . | quote }}
- name: MLFLOW_DB_PASSWORD_FILE
  value: /etc/mlflow/db/password
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.sslmode }}
- name: MLFLOW_DB_SSLMODE
  value: {{ .Values.externalDatabase.sslmode | quote }}
{{- end }}
- name: MLFLOW_DB_WAIT_SECONDS
  value: {{ .Values.mlflow.dbWaitSeconds | quote }}
- name: MLFLOW_DB_UPGRADE
  value: "false"
- name: MLFLOW_AUTH_ENABLED
  value: {{ .Values.mlflow.auth.enabled | quote }}
{{- if .Values.mlflow.auth.enabled }}
- name: MLFLOW_AUTH_DB_NAME
  value: {{ include "mlops-kit.db.authName" . | quote }}
- name: MLFLOW_AUTH_ADMIN_USERNAME
  value: {{ .Values.mlflow.auth.adminUsername | quote }}
- name: MLFLOW_AUTH_ADMIN_PASSWORD_FILE
  value: /etc/mlflow/auth/admin-password
- name: MLFLOW_FLASK_SERVER_SECRET_KEY_FILE
  value: /etc/mlflow/auth/flask-secret-key
- name: MLFLOW_AUTH_DEFAULT_PERMISSION
  value: {{ .Values.mlflow.auth.defaultPermission | quote }}
- name: MLFLOW_AUTH_CACHE_TTL_SECONDS
  value: {{ .Values.mlflow.auth.cacheTtlSeconds | quote }}
- name: MLFLOW_PEOPLE_DIR
  value: /etc/mlflow/people
{{- end }}
{{- if include "mlops-kit.metrics.account" . }}
- name: MLFLOW_METRICS_USERNAME
  value: {{ .Values.mlflow.metrics.username | quote }}
- name: MLFLOW_METRICS_PASSWORD_FILE
  value: /etc/mlflow/metrics/password
{{- end }}
- name: MLFLOW_SERVE_ARTIFACTS
  value: {{ .Values.mlflow.serveArtifacts | quote }}
{{- if .Values.mlflow.serveArtifacts }}
- name: MLFLOW_ARTIFACTS_DESTINATION
  value: {{ include "mlops-kit.sftp.artifactsUri" . | quote }}
{{- else }}
- name: MLFLOW_DEFAULT_ARTIFACT_ROOT
  value: {{ include "mlops-kit.sftp.artifactsUri" . | quote }}
{{- end }}
- name: MLFLOW_SFTP_PRIVATE_KEY_FILE
  value: /etc/mlflow/sftp/id_rsa
- name: MLFLOW_SFTP_KNOWN_HOSTS_FILE
  value: /etc/mlflow/known-hosts/known_hosts
- name: MLFLOW_PORT
  value: "5000"
- name: MLFLOW_WORKERS
  value: {{ .Values.mlflow.workers | quote }}
- name: MLFLOW_ALLOWED_HOSTS
  value: {{ include "mlops-kit.mlflow.allowedHosts" . | quote }}
{{- with .Values.mlflow.corsAllowedOrigins }}
- name: MLFLOW_CORS_ALLOWED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
- name: MLFLOW_PROMETHEUS_DIR
  value: {{ ternary "/tmp/mlflow/prometheus" "" .Values.mlflow.metrics.enabled | quote }}
- name: MLFLOW_ENABLE_WORKSPACES
  value: {{ .Values.mlflow.enableWorkspaces | quote }}
{{- end -}}

{{/* Mounts of the MLflow containers: /tmp, the secrets as files, the SFTP key and known_hosts. */}}
{{- define "mlops-kit.mlflow.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: db-password
  mountPath: /etc/mlflow/db
  readOnly: true
{{- if .Values.mlflow.auth.enabled }}
- name: auth
  mountPath: /etc/mlflow/auth
  readOnly: true
- name: people
  mountPath: /etc/mlflow/people
  readOnly: true
{{- end }}
{{- if include "mlops-kit.metrics.account" . }}
- name: metrics
  mountPath: /etc/mlflow/metrics
  readOnly: true
{{- end }}
- name: sftp-client-key
  mountPath: /etc/mlflow/sftp
  readOnly: true
- name: sftp-known-hosts
  mountPath: /etc/mlflow/known-hosts
  readOnly: true
{{- end -}}

{{/* Secret volumes are group-readable (0440): the pod's group owns them via fsGroup. */}}
{{- define "mlops-kit.mlflow.volumes" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.mlflow.tmpSize }}
- name: db-password
  secret:
    secretName: {{ include "mlops-kit.db.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "mlops-kit.db.secretKey" . }}
        path: password
{{- if .Values.mlflow.auth.enabled }}
- name: auth
  secret:
    secretName: {{ include "mlops-kit.mlflow.authSecretName" . }}
    defaultMode: 0440
    items:
      - key: admin-password
        path: admin-password
      - key: flask-secret-key
        path: flask-secret-key
{{- /* people.json and the passwords; a person's own existingSecret supplies <name>.password. */}}
- name: people
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "mlops-kit.people.secretName" . }}
      {{- range .Values.people }}
      {{- if .existingSecret }}
      - secret:
          name: {{ .existingSecret }}
          items:
            - key: password
              path: {{ .name }}.password
      {{- end }}
      {{- end }}
{{- end }}
{{- if include "mlops-kit.metrics.account" . }}
- name: metrics
  secret:
    secretName: {{ include "mlops-kit.metrics.secretName" . }}
    defaultMode: 0440
    items:
      - key: password
        path: password
{{- end }}
- name: sftp-client-key
  secret:
    secretName: {{ include "mlops-kit.sftpClientKey.secretName" . }}
    defaultMode: 0440
    items:
      - key: id_rsa
        path: id_rsa
{{- if .Values.sftp.enabled }}
- name: sftp-known-hosts
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: sftp-host-keys
  secret:
    secretName: {{ include "mlops-kit.sftp.hostKeysSecretName" . }}
    defaultMode: 0440
- name: scripts
  configMap:
    name: {{ include "mlops-kit.fullname" . }}-scripts
    defaultMode: 0444
{{- else }}
- name: sftp-known-hosts
  configMap:
    name: {{ include "mlops-kit.mlflow.fullname" . }}-known-hosts
{{- end }}
{{- end -}}

{{/* Init container that writes known_hosts for the bundled SFTP from its host keys, so MLflow
     checks the server's identity without ever mounting the host private keys itself. */}}
{{- define "mlops-kit.knownHostsInitContainer" -}}
- name: known-hosts
  image: {{ include "mlops-kit.image" (dict "ctx" . "image" .Values.sftp.image) }}
  imagePullPolicy: {{ .Values.sftp.image.pullPolicy }}
  command: [bash, /opt/mlops-kit/scripts/public-keys.sh]
  args:
    - known-hosts
    - /etc/sftp/host-keys
    - /etc/mlflow/known-hosts/known_hosts
    - {{ printf "%s,%s.%s,%s.%s.svc,%s.%s.svc.%s" (include "mlops-kit.sftp.fullname" .) (include "mlops-kit.sftp.fullname" .) .Release.Namespace (include "mlops-kit.sftp.fullname" .) .Release.Namespace (include "mlops-kit.sftp.fullname" .) .Release.Namespace .Values.clusterDomain | quote }}
    - {{ .Values.sftp.service.port | quote }}
  securityContext:
    {{- include "mlops-kit.containerSecurityContext" . | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 64Mi}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: sftp-host-keys
      mountPath: /etc/sftp/host-keys
      readOnly: true
    - name: sftp-known-hosts
      mountPath: /etc/mlflow/known-hosts
    - name: scripts
      mountPath: /opt/mlops-kit/scripts
      readOnly: true
{{- end -}}

{{/* ---------- Extension points (extraEnv, extraVolumes, extraContainers, ...) ---------- */}}

{{/* A value rendered with tpl, so extra* and extraObjects may use templates:
     include "mlops-kit.tplvalues" (dict "value" .Values.mlflow.extraEnv "ctx" $) */}}
{{- define "mlops-kit.tplvalues" -}}
{{- if kindIs "string" .value -}}
{{- tpl .value .ctx -}}
{{- else -}}
{{- tpl (toYaml .value) .ctx -}}
{{- end -}}
{{- end -}}

{{/* A container's env: the contract's variables (YAML list in .env), then the component's
     extraEnv. A name in extraEnv replaces the chart's variable of that name (the user wins, as
     in Bitnami's charts; NOTES warns), so the list never holds a name twice.
     include "mlops-kit.env" (dict "ctx" $ "env" (include ...) "extra" .Values.mlflow.extraEnv) */}}
{{- define "mlops-kit.env" -}}
{{- $extra := list -}}
{{- if .extra -}}
{{- $extra = include "mlops-kit.tplvalues" (dict "value" .extra "ctx" .ctx) | fromYamlArray -}}
{{- end -}}
{{- $names := list -}}
{{- range $extra }}{{ $names = append $names .name }}{{ end -}}
{{- $env := list -}}
{{- range (.env | fromYamlArray) -}}
{{- if not (has .name $names) }}{{ $env = append $env . }}{{ end -}}
{{- end -}}
{{- toYaml (concat $env $extra) -}}
{{- end -}}

{{/* Names of a component's extraEnv that replace a variable the chart sets (for NOTES):
     include "mlops-kit.envCollisions" (dict "ctx" $ "env" (include ...) "extra" .Values.mlflow.extraEnv) */}}
{{- define "mlops-kit.envCollisions" -}}
{{- $chart := list -}}
{{- range (.env | fromYamlArray) }}{{ $chart = append $chart .name }}{{ end -}}
{{- $hits := list -}}
{{- range .extra -}}
{{- if has .name $chart }}{{ $hits = append $hits .name }}{{ end -}}
{{- end -}}
{{- join ", " (uniq $hits) -}}
{{- end -}}

{{/* The contract variables of the PostgreSQL and SFTP containers (the MLflow ones: mlops-kit.mlflow.env). */}}
{{- define "mlops-kit.postgresql.env" -}}
- name: POSTGRES_PASSWORD_FILE
  value: /etc/postgresql/secrets/postgres-password
- name: POSTGRES_APP_USER
  value: {{ .Values.postgresql.auth.username | quote }}
- name: POSTGRES_APP_PASSWORD_FILE
  value: /etc/postgresql/secrets/password
- name: POSTGRES_APP_DB
  value: {{ .Values.postgresql.auth.database | quote }}
- name: POSTGRES_AUTH_DB
  value: {{ ternary .Values.postgresql.auth.authDatabase "" .Values.mlflow.auth.enabled | quote }}
- name: POSTGRES_PORT
  value: "5432"
- name: POSTGRES_MAX_CONNECTIONS
  value: {{ .Values.postgresql.maxConnections | quote }}
- name: POSTGRES_SHARED_BUFFERS
  value: {{ .Values.postgresql.sharedBuffers | quote }}
{{- end -}}

{{- define "mlops-kit.sftp.env" -}}
- name: SFTP_USERNAME
  value: {{ .Values.sftp.username | quote }}
- name: SFTP_PORT
  value: "2222"
- name: SFTP_DATA_ROOT
  value: /data
- name: SFTP_DIRECTORIES
  value: "artifacts dvc"
- name: SFTP_ACCESS
  value: /etc/sftp/access
- name: SFTP_HOST_KEYS_DIR
  value: /etc/sftp/host-keys
- name: SFTP_MAX_SESSIONS
  value: {{ .Values.sftp.maxSessions | quote }}
- name: SFTP_MAX_STARTUPS
  value: {{ .Values.sftp.maxStartups | quote }}
- name: SFTP_LOG_LEVEL
  value: {{ .Values.sftp.logLevel | quote }}
{{- end -}}

{{/* A component's extraVolumeMounts (list items, after the chart's mounts) and its envFrom:
     include "mlops-kit.extraVolumeMounts" (dict "ctx" $ "values" .Values.mlflow) */}}
{{- define "mlops-kit.extraVolumeMounts" -}}
{{- with .values.extraVolumeMounts -}}
{{ include "mlops-kit.tplvalues" (dict "value" . "ctx" $.ctx) }}
{{- end -}}
{{- end -}}

{{- define "mlops-kit.extraEnvFrom" -}}
{{- with .values.extraEnvFrom }}
envFrom:
  {{- include "mlops-kit.tplvalues" (dict "value" . "ctx" $.ctx) | nindent 2 }}
{{- end }}
{{- end -}}
