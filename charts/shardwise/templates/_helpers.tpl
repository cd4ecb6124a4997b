{{- define "shardwise.fullname" -}}
{{- printf "%s" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "shardwise.labels" -}}
app.kubernetes.io/name: shardwise
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "shardwise.s3endpoint" -}}
{{- if .Values.store.endpoint -}}
{{ .Values.store.endpoint }}
{{- else if .Values.s3.bundled -}}
{{ printf "http://%s-s3.%s.svc:8333" (include "shardwise.fullname" .) .Release.Namespace }}
{{- else -}}
{{ fail "set store.endpoint (your S3 endpoint), or s3.bundled=true for a trial server" }}
{{- end -}}
{{- end -}}

{{/* The operator's rules: the same list for the ClusterRole and for each namespaced Role.
The chart README has them as a table, and tests/integration/test_helm_chart.py asserts the
exact list: change all three together. */}}
{{- define "shardwise.rules" -}}
- apiGroups: ["shardwise.io"]
  resources: ["datasets", "shardedmodels", "forgetrequests", "experiments", "corrections"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["shardwise.io"]
  resources: ["datasets/status", "shardedmodels/status", "forgetrequests/status", "experiments/status",
              "corrections/status"]
  verbs: ["get", "patch", "update"]
# an Experiment with spec.train creates its ShardedModel (owned by the Experiment)
- apiGroups: ["shardwise.io"]
  resources: ["shardedmodels"]
  verbs: ["create"]
# Jobs carry a controller ownerReference to their ShardedModel or Experiment with blockOwnerDeletion;
# where the OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift, hardened
# clusters) creating such a Job needs update on the owner's finalizers subresource.
- apiGroups: ["shardwise.io"]
  resources: ["shardedmodels/finalizers", "experiments/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ .Values.store.secretName | quote }}]
  verbs: ["get"]
{{- end -}}

{{/* An image by digest when one is given (immutable), else by tag. */}}
{{- define "shardwise.image" -}}
{{- if .digest -}}{{ .repository }}@{{ .digest }}{{- else -}}{{ .repository }}:{{ .tag }}{{- end -}}
{{- end -}}

{{/* The names of imagePullSecrets, comma-separated (for the trainer Jobs). */}}
{{- define "shardwise.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}{{- $names = append $names .name -}}{{- end -}}
{{- join "," $names -}}
{{- end -}}
