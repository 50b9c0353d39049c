{{/*
Chart name, truncated to 63 characters.
*/}}
{{- define "mnist-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the RayService name. Not truncated: validateValues fails with a message when it is
longer than KubeRay's 47 characters or not a DNS-1035 label, instead of silently changing it.
*/}}
{{- define "mnist-serve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "mnist-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of the chart's own workloads (Redis): stable for the life of a release.
*/}}
{{- define "mnist-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels inside the Ray pod templates. Never app.kubernetes.io/name: KubeRay's head Service
selects head pods by app.kubernetes.io/name=kuberay, which the pod must keep. Stable for the
life of a release (a change here makes KubeRay build a new cluster).
*/}}
{{- define "mnist-serve.rayPodLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: mnist-serve
{{- end }}

{{/*
A label selector for the release's Ray pods (head and workers) and no other pod: the pod-template
labels plus KubeRay's ray.io/node-type, which only Ray pods carry.
*/}}
{{- define "mnist-serve.rayPodSelector" -}}
matchLabels:
  {{- include "mnist-serve.rayPodLabels" . | nindent 2 }}
matchExpressions:
  - key: ray.io/node-type
    operator: In
    values: [head, worker]
{{- end }}

{{/*
Labels of every object the chart owns (never inside the RayService's pod templates).
*/}}
{{- define "mnist-serve.labels" -}}
helm.sh/chart: {{ include "mnist-serve.chart" . }}
{{ include "mnist-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnist-serve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The app image: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "mnist-serve.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding Ray's auth token (key auth_token).
*/}}
{{- define "mnist-serve.authSecretName" -}}
{{- default (printf "%s-ray-auth" (include "mnist-serve.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/*
Redis: service name, address, and the Secret/key holding its password.
*/}}
{{- define "mnist-serve.redisName" -}}
{{- printf "%s-redis" (include "mnist-serve.fullname" .) }}
{{- end }}

{{- define "mnist-serve.redisAddress" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s.%s.svc.cluster.local:6379" (include "mnist-serve.redisName" .) .Release.Namespace }}
{{- else }}
{{- .Values.redis.external.address }}
{{- end }}
{{- end }}

{{- define "mnist-serve.redisSecretName" -}}
{{- if .Values.redis.enabled }}
{{- default (include "mnist-serve.redisName" .) .Values.redis.existingSecret }}
{{- else }}
{{- .Values.redis.external.existingSecret }}
{{- end }}
{{- end }}

{{- define "mnist-serve.redisPasswordKey" -}}
{{- if .Values.redis.enabled }}redis-password{{ else }}{{ .Values.redis.external.passwordKey }}{{ end }}
{{- end }}

{{/*
A random secret value that survives upgrades: reuse the value in the live Secret when there is one.
Usage: include "mnist-serve.stableSecret" (list $ secretName key length)
*/}}
{{- define "mnist-serve.stableSecret" -}}
{{- $root := index . 0 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) }}
{{- if and $existing (hasKey $existing.data (index . 2)) }}
{{- index $existing.data (index . 2) | b64dec }}
{{- else }}
{{- randAlphaNum (index . 3) }}
{{- end }}
{{- end }}

{{/*
A Ray pod template (head or worker). Only the selector labels and a component label go into
the template's metadata: anything that changes per chart version would rebuild the cluster.
Usage: include "mnist-serve.podTemplate" (dict "root" $ "component" "ray-head" "group" .Values.head "resources" ... "head" true)
*/}}
{{- define "mnist-serve.podTemplate" -}}
{{- $root := .root }}
{{- $group := .group }}
metadata:
  labels:
    {{- include "mnist-serve.rayPodLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "mnist-serve.podSecurityContext" $root | nindent 4 }}
    fsGroup: 100
  {{- with .runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  containers:
    # KubeRay treats the first container as the Ray container.
    - name: {{ if .head }}ray-head{{ else }}ray-worker{{ end }}
      image: {{ include "mnist-serve.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      securityContext:
        {{- include "mnist-serve.containerSecurityContext" $root | nindent 8 }}
      ports:
        {{- if .head }}
        - name: gcs-server
          containerPort: 6379
        - name: dashboard
          containerPort: 8265
        - name: client
          containerPort: 10001
        {{- end }}
        # KubeRay puts the head's ports named `serve` and `serve-*` on its serve Service.
        - name: serve
          containerPort: 8000
        {{- if $root.Values.serve.grpc.enabled }}
        - name: serve-grpc
          containerPort: {{ include "mnist-serve.grpcPort" $root }}
        {{- end }}
        - name: metrics
          containerPort: 8080
      {{- $tracing := and $root.Values.tracing.enabled $root.Values.tracing.otlpEndpoint }}
      env:
        # serve.httpEntry, read by Serve when its processes start (serve_app/local/http_entry.py has the same table).
        {{- if eq $root.Values.serve.httpEntry "haproxy" }}
        - name: RAY_SERVE_ENABLE_HA_PROXY
          value: "1"
        # HAProxy replays a request that got no answer at all (a replica lost with requests in flight).
        - name: RAY_SERVE_HAPROXY_RETRY_ON
          value: "conn-failure empty-response"
        # A client that stays silent while it should be sending is closed after 30 s (Serve's default: 1 h).
        - name: RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S
          value: "30"
        {{- else }}
        - name: RAY_SERVE_ENABLE_HA_PROXY
          value: "0"
        - name: RAY_SERVE_ENABLE_DIRECT_INGRESS
          value: "0"
        {{- end }}
        {{- if .simulatedGpus }}
        # workerGroups.gpu.simulateGpus: Ray advertises GPUs this pod does not have, so the
        # Classifier runs on the CPU by design instead of refusing to start without CUDA.
        - name: MNIST_SERVE_SIMULATED_GPUS
          value: "1"
        {{- end }}
        {{- if $root.Values.serve.grpc.enabled }}
        # serve.grpc.maxMessageBytes: the largest gRPC message Serve's ingress accepts (Serve's own default is 2 GiB).
        - name: RAY_SERVE_GRPC_MAX_MESSAGE_SIZE
          value: {{ $root.Values.serve.grpc.maxMessageBytes | int64 | toString | quote }}
        {{- end }}
      {{- if $root.Values.asyncInference.enabled }}
        # Redis for asynchronous inference, read by serve_app.tasks; the password never enters the Serve config.
        - name: MNIST_SERVE_REDIS_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ include "mnist-serve.redisSecretName" $root }}
              key: {{ include "mnist-serve.redisPasswordKey" $root }}
        - name: MNIST_SERVE_REDIS_URL
          value: "redis://:$(MNIST_SERVE_REDIS_PASSWORD)@{{ include "mnist-serve.redisAddress" $root }}/{{ $root.Values.asyncInference.redisDb }}"
      {{- end }}
      {{- if $tracing }}
        # OTLP export for the replicas (serve_app.tracing) and, through Serve's variables, the proxies.
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ $root.Values.tracing.otlpEndpoint | quote }}
        - name: OTEL_SERVICE_NAME
          value: mnist-serve
        - name: RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH
          value: serve_app.tracing:otlp_span_processors
        - name: RAY_SERVE_TRACING_SAMPLING_RATIO
          value: {{ $root.Values.tracing.samplingRatio | quote }}
      {{- end }}
      # No /dev/shm volume here: KubeRay mounts one (medium Memory) sized to the memory limit, so
      # Ray's object store (30% of the pod's memory) fits in it.
      resources:
        {{- toYaml .resources | nindent 8 }}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Pod-level security context of every pod the chart runs (Pod Security "restricted").
*/}}
{{- define "mnist-serve.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container security context of every container the chart runs (Pod Security "restricted").
*/}}
{{- define "mnist-serve.containerSecurityContext" -}}
allowPrivilegeEscalation: false
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Placement of the `helm test` pods: on the node of the release's Ray head pod, which has pulled the
app image already (the image is several GB), and off any tainted GPU node.
*/}}
{{- define "mnist-serve.testPodPlacement" -}}
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "mnist-serve.rayPodLabels" . | nindent 12 }}
            ray.io/node-type: head
{{- with .Values.head.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The gRPC API's port: grpc_options.port of files/serve-config.yaml (the one Serve config).
*/}}
{{- define "mnist-serve.grpcPort" -}}
{{- $config := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- int $config.grpc_options.port }}
{{- end }}
