{{/*
serveConfigV2: the project's one Serve config (files/serve-config.yaml, the same file the local
run deploys), with only per-environment numbers replaced from values:
  - application args: modelId, maxBatchImages, maxBodyBytes, modelStore, maxModelsPerReplica
  - per deployment: num_replicas or autoscaling_config, max_ongoing_requests, max_replicas_per_node,
    ray_actor_options.num_cpus / num_gpus / resources, and the Ingress's and the Classifier's
    user_config (batching)
  - tracing_config, from tracing.*
  - grpc_options dropped when serve.grpc.enabled is false
  - asynchronous inference (args.tasks, the TaskConsumer's max replicas), from asyncInference.*;
    without it the TaskConsumer entry is dropped
Everything else (import_path, deployment names, proxy and HTTP options) comes from the file,
so the local run and the cluster cannot drift; tests/chart/test_serve_config.py proves it.
*/}}
{{- define "mnist-serve.serveConfig" -}}
{{- $config := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- $serve := .Values.serve }}
{{- range $app := $config.applications }}
{{- $args := default (dict) $app.args }}
{{- $async := $.Values.asyncInference }}
{{- $tasks := default (dict) $args.tasks }}
{{- $_ := set $tasks "enabled" $async.enabled }}
{{- $_ := set $tasks "max_retries" (int $async.maxRetries) }}
{{- $_ := set $tasks "result_ttl_s" (int $async.resultTtlS) }}
{{- $_ := set $tasks "visibility_timeout_s" (int $async.visibilityTimeoutS) }}
{{- $_ := set $args "tasks" $tasks }}
{{- if not $async.enabled }}
{{- /* No TaskConsumer in the app without async inference: drop its entry from the config. */}}
{{- $kept := list }}
{{- range $deployment := $app.deployments }}
{{- if ne $deployment.name "TaskConsumer" }}
{{- $kept = append $kept $deployment }}
{{- end }}
{{- end }}
{{- $_ := set $app "deployments" $kept }}
{{- end }}
{{- $_ := set $args "model_id" $serve.app.modelId }}
{{- $_ := set $args "max_batch_images" (int $serve.app.maxBatchImages) }}
{{- $_ := set $args "max_body_bytes" (int64 $serve.app.maxBodyBytes) }}
{{- $_ := set $args "max_models_per_replica" (int $serve.app.maxModelsPerReplica) }}
{{- if $serve.app.modelStore }}
{{- $_ := set $args "model_store" $serve.app.modelStore }}
{{- end }}
{{- $_ := set $app "args" $args }}
{{- range $deployment := $app.deployments }}
{{- if eq $deployment.name "TaskConsumer" }}
{{- $_ := set $deployment.autoscaling_config "max_replicas" (int $.Values.asyncInference.maxConsumerReplicas) }}
{{- if $.Values.workerGroups.cpu.enabled }}
{{- $_ := set $deployment.ray_actor_options "resources" (dict (include "mnist-serve.cpuPoolResource" $) 1) }}
{{- end }}
{{- continue }}
{{- end }}
{{- $values := index $serve (lower $deployment.name) }}
{{- $actorOptions := default (dict) $deployment.ray_actor_options }}
{{- $_ := set $actorOptions "num_cpus" $values.numCpus }}
{{- if hasKey $values "batching" }}
{{- $_ := set $deployment "user_config" (dict "max_batch_size" (int $values.batching.maxBatchSize) "batch_wait_timeout_s" $values.batching.batchWaitTimeoutS) }}
{{- if hasKey $values.batching "maxImagesPerModelCall" }}
{{- $_ := set $deployment.user_config "max_images_per_model_call" (int $values.batching.maxImagesPerModelCall) }}
{{- end }}
{{- end }}
{{- if eq $deployment.name "Classifier" }}
{{- $_ := set $actorOptions "num_gpus" $values.numGpus }}
{{- if eq $values.router.type "latencyAware" }}
{{- $_ := set $deployment "request_router_config" (dict "request_router_class" "serve_app.router:LatencyAwareRouter" "request_routing_stats_period_s" $values.router.statsPeriodS) }}
{{- else }}
{{- $_ := unset $deployment "request_router_config" }}
{{- end }}
{{- else if $.Values.workerGroups.cpu.enabled }}
{{- /* Pin CPU-only deployments to the CPU worker group through its custom resource. */}}
{{- $_ := set $actorOptions "resources" (dict (include "mnist-serve.cpuPoolResource" $) 1) }}
{{- end }}
{{- $_ := set $deployment "ray_actor_options" $actorOptions }}
{{- $_ := set $deployment "max_ongoing_requests" (int $values.maxOngoingRequests) }}
{{- if not (kindIs "invalid" $values.maxReplicasPerNode) }}
{{- $_ := set $deployment "max_replicas_per_node" (int $values.maxReplicasPerNode) }}
{{- end }}
{{- if $values.autoscaling.enabled }}
{{- $_ := unset $deployment "num_replicas" }}
{{- $autoscaling := dict "min_replicas" (int $values.autoscaling.minReplicas) "max_replicas" (int $values.autoscaling.maxReplicas) "target_ongoing_requests" $values.autoscaling.targetOngoingRequests }}
{{- if hasKey $values.autoscaling "initialReplicas" }}
{{- if not (kindIs "invalid" $values.autoscaling.initialReplicas) }}
{{- $_ := set $autoscaling "initial_replicas" (int $values.autoscaling.initialReplicas) }}
{{- end }}
{{- end }}
{{- range $key, $field := dict "upscaleDelayS" "upscale_delay_s" "downscaleDelayS" "downscale_delay_s" "lookBackPeriodS" "look_back_period_s" }}
{{- if hasKey $values.autoscaling $key }}
{{- $_ := set $autoscaling $field (index $values.autoscaling $key) }}
{{- end }}
{{- end }}
{{- if eq $deployment.name "Classifier" }}
{{- if eq $values.autoscaling.policy "latencySLA" }}
{{- $_ := set $autoscaling "policy" (dict "policy_function" "serve_app.policies:LatencySLAPolicy" "policy_kwargs" (dict "sla_ms" $values.autoscaling.latencySLA.slaMs "downscale_below" $values.autoscaling.latencySLA.downscaleBelow)) }}
{{- else if eq $values.autoscaling.policy "schedule" }}
{{- $_ := set $autoscaling "policy" (dict "policy_function" "serve_app.policies:SchedulePolicy" "policy_kwargs" (dict "timezone" $values.autoscaling.schedule.timezone "default_replicas" (int $values.autoscaling.schedule.defaultReplicas) "schedule" $values.autoscaling.schedule.windows)) }}
{{- end }}
{{- end }}
{{- $_ := set $deployment "autoscaling_config" $autoscaling }}
{{- else }}
{{- $_ := unset $deployment "autoscaling_config" }}
{{- $_ := set $deployment "num_replicas" (int $values.numReplicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.serve.pipelinePolicy.enabled }}
{{- range $app := $config.applications }}
{{- $_ := set $app "autoscaling_policy" (dict "policy_function" "serve_app.policies:ProportionalPipelinePolicy" "policy_kwargs" (dict "preprocessors_per_classifier" $.Values.serve.pipelinePolicy.preprocessorsPerClassifier)) }}
{{- end }}
{{- end }}
{{- if not .Values.serve.grpc.enabled }}
{{- $_ := unset $config "grpc_options" }}
{{- end }}
{{- if .Values.tracing.enabled }}
{{- $tracing := dict "enabled" true "sampling_ratio" .Values.tracing.samplingRatio }}
{{- if .Values.tracing.otlpEndpoint }}
{{- $_ := set $tracing "exporter_import_path" "serve_app.tracing:otlp_span_processors" }}
{{- end }}
{{- $_ := set $config "tracing_config" $tracing }}
{{- end }}
{{- /* JSON (valid YAML) so that no value's type depends on YAML 1.1 rules ("09:00", "no"). */}}
{{- toPrettyJson $config }}
{{- end }}

{{/*
Custom Ray resource that the CPU worker group advertises and the CPU-only deployments ask for.
*/}}
{{- define "mnist-serve.cpuPoolResource" -}}
mnist_cpu_pool
{{- end }}
