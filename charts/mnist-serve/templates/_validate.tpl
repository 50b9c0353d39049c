{{/*
Cross-field checks the schema cannot express. Fails once, listing every problem with the value
to set. Included at the top of rayservice.yaml.
*/}}
{{- define "mnist-serve.validateValues" -}}
{{- $errors := list }}
{{- $name := include "mnist-serve.fullname" . }}
{{- if gt (len $name) 47 }}
{{- $errors = append $errors (printf "the RayService name %q is %d characters; KubeRay allows at most 47: set fullnameOverride or a shorter release name" $name (len $name)) }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- $errors = append $errors (printf "the RayService name %q is not a DNS-1035 label (lowercase letters, digits, '-', starting with a letter): set fullnameOverride" $name) }}
{{- end }}
{{- $classifier := .Values.serve.classifier }}
{{- $gpu := .Values.workerGroups.gpu }}
{{- $classifierMax := ternary $classifier.autoscaling.maxReplicas $classifier.numReplicas $classifier.autoscaling.enabled }}
{{- if gt (float64 $classifier.numGpus) 0.0 }}
{{- if not $gpu.enabled }}
{{- $errors = append $errors (printf "serve.classifier.numGpus is %v but workerGroups.gpu.enabled is false: enable the GPU group or set serve.classifier.numGpus to 0" $classifier.numGpus) }}
{{- else }}
{{- if gt (float64 $classifier.numGpus) (float64 $gpu.gpusPerPod) }}
{{- $errors = append $errors (printf "serve.classifier.numGpus (%v) is more than one GPU pod has (workerGroups.gpu.gpusPerPod=%v): a replica could never be placed" $classifier.numGpus $gpu.gpusPerPod) }}
{{- end }}
{{- $needed := mulf (float64 $classifierMax) (float64 $classifier.numGpus) }}
{{- $available := mulf (float64 $gpu.maxReplicas) (float64 $gpu.gpusPerPod) }}
{{- if gt $needed $available }}
{{- $errors = append $errors (printf "%v Classifier replicas x serve.classifier.numGpus %v = %v GPUs, but workerGroups.gpu.maxReplicas %v x gpusPerPod %v = %v: raise workerGroups.gpu.maxReplicas or lower serve.classifier.numGpus / the replica count" $classifierMax $classifier.numGpus $needed $gpu.maxReplicas $gpu.gpusPerPod $available) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $deployment := list "ingress" "classifier" }}
{{- $spec := index $.Values.serve $deployment }}
{{- if lt (float64 $spec.maxOngoingRequests) (float64 $spec.batching.maxBatchSize) }}
{{- $errors = append $errors (printf "serve.%s.maxOngoingRequests (%v) is below serve.%s.batching.maxBatchSize (%v): a batch could never fill; raise maxOngoingRequests" $deployment $spec.maxOngoingRequests $deployment $spec.batching.maxBatchSize) }}
{{- end }}
{{- end }}
{{- range $deployment := list "ingress" "preprocessor" "classifier" }}
{{- $auto := (index $.Values.serve $deployment).autoscaling }}
{{- if and $auto.enabled (gt (float64 $auto.minReplicas) (float64 $auto.maxReplicas)) }}
{{- $errors = append $errors (printf "serve.%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $deployment $auto.minReplicas $auto.maxReplicas) }}
{{- end }}
{{- if and $auto.enabled (hasKey $auto "initialReplicas") }}
{{- if not (kindIs "invalid" $auto.initialReplicas) }}
{{- if or (lt (float64 $auto.initialReplicas) (float64 $auto.minReplicas)) (gt (float64 $auto.initialReplicas) (float64 $auto.maxReplicas)) }}
{{- $errors = append $errors (printf "serve.%s.autoscaling.initialReplicas (%v) must lie between minReplicas (%v) and maxReplicas (%v)" $deployment $auto.initialReplicas $auto.minReplicas $auto.maxReplicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $deployment := list "ingress" "preprocessor" "classifier" }}
{{- $spec := index $.Values.serve $deployment }}
{{- if not (kindIs "invalid" $spec.maxReplicasPerNode) }}
{{- $replicas := ternary $spec.autoscaling.maxReplicas $spec.numReplicas $spec.autoscaling.enabled }}
{{- $groupName := ternary "gpu" "cpu" (and (eq $deployment "classifier") (gt (float64 $classifier.numGpus) 0.0)) }}
{{- $group := index $.Values.workerGroups $groupName }}
{{- if gt (float64 $replicas) (mulf (float64 $spec.maxReplicasPerNode) (float64 $group.maxReplicas)) }}
{{- $errors = append $errors (printf "serve.%s: %v replicas at most %v per node need more than workerGroups.%s.maxReplicas (%v) pods: raise workerGroups.%s.maxReplicas or serve.%s.maxReplicasPerNode" $deployment $replicas $spec.maxReplicasPerNode $groupName $group.maxReplicas $groupName $deployment) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $group := list "gpu" "cpu" }}
{{- $spec := index $.Values.workerGroups $group }}
{{- if and $spec.enabled (or (gt (float64 $spec.minReplicas) (float64 $spec.replicas)) (gt (float64 $spec.replicas) (float64 $spec.maxReplicas))) }}
{{- $errors = append $errors (printf "workerGroups.%s: need minReplicas (%v) <= replicas (%v) <= maxReplicas (%v) (KubeRay reads these only when it creates a cluster: a running one keeps its old counts)" $group $spec.minReplicas $spec.replicas $spec.maxReplicas) }}
{{- end }}
{{- end }}
{{- if and (not .Values.workerGroups.cpu.enabled) (not .Values.workerGroups.gpu.enabled) }}
{{- $errors = append $errors "both worker groups are disabled: the head takes no replicas (num-cpus 0), so enable workerGroups.gpu or workerGroups.cpu" }}
{{- end }}
{{- if and (eq (float64 $classifier.numGpus) 0.0) (not .Values.workerGroups.cpu.enabled) }}
{{- $errors = append $errors "serve.classifier.numGpus is 0 and workerGroups.cpu is disabled: the CPU-only deployments need workerGroups.cpu" }}
{{- end }}
{{- if .Values.serve.pipelinePolicy.enabled }}
{{- if not (and .Values.serve.preprocessor.autoscaling.enabled .Values.serve.classifier.autoscaling.enabled) }}
{{- $errors = append $errors "serve.pipelinePolicy.enabled needs serve.preprocessor.autoscaling.enabled and serve.classifier.autoscaling.enabled" }}
{{- end }}
{{- end }}
{{- if and (ne .Values.serve.classifier.autoscaling.policy "default") (not .Values.serve.classifier.autoscaling.enabled) }}
{{- $errors = append $errors (printf "serve.classifier.autoscaling.policy is %s but serve.classifier.autoscaling.enabled is false: enable autoscaling" .Values.serve.classifier.autoscaling.policy) }}
{{- end }}
{{- if and .Values.asyncInference.enabled (not .Values.redis.enabled) (not .Values.redis.external.address) }}
{{- $errors = append $errors "asyncInference.enabled needs a Redis: set redis.enabled=true, or redis.external.address (and redis.external.existingSecret)" }}
{{- end }}
{{- if and .Values.ha.enabled (not .Values.redis.enabled) (not .Values.redis.external.address) }}
{{- $errors = append $errors "ha.enabled needs a Redis: set redis.enabled=true, or redis.external.address (and redis.external.existingSecret)" }}
{{- end }}
{{- if and (not .Values.redis.enabled) .Values.redis.external.address (not .Values.redis.external.existingSecret) }}
{{- $errors = append $errors "redis.external.address is set without redis.external.existingSecret: name the Secret that holds its password" }}
{{- end }}
{{- if eq .Values.upgradeStrategy.type "NewClusterWithIncrementalUpgrade" }}
{{- /* KubeRay 1.7.0's ValidateClusterUpgradeOptions: without these the RayService is ValidationFailed. */}}
{{- $options := .Values.upgradeStrategy.clusterUpgradeOptions }}
{{- if not .Values.autoscaler.enabled }}
{{- $errors = append $errors "upgradeStrategy.type NewClusterWithIncrementalUpgrade needs autoscaler.enabled=true (KubeRay scales the new cluster up step by step)" }}
{{- end }}
{{- if not $options.gatewayClassName }}
{{- $errors = append $errors "upgradeStrategy.type NewClusterWithIncrementalUpgrade needs upgradeStrategy.clusterUpgradeOptions.gatewayClassName: the Gateway API GatewayClass of your cluster (kubectl get gatewayclass)" }}
{{- end }}
{{- if gt (int $options.stepSizePercent) (int $options.maxSurgePercent) }}
{{- $errors = append $errors (printf "upgradeStrategy.clusterUpgradeOptions.stepSizePercent (%v) must not exceed maxSurgePercent (%v)" $options.stepSizePercent $options.maxSurgePercent) }}
{{- end }}
{{- end }}
{{- if $errors }}
{{- fail (printf "\n\nmnist-serve: invalid values:\n  - %s\n" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}
