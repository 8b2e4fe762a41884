//! Kubernetes: a sweep becomes one Indexed Job (`completionMode: Indexed`); each pod runs the
//! job of its `JOB_COMPLETION_INDEX`, which `under8k sweep run` reads when no `--index` is
//! given. The sweep and the data live on volumes every pod mounts.

/// Where and how the pods run.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// The container image that has `under8k` on its `PATH`.
    pub image: String,
    /// Pods at once.
    pub parallelism: usize,
    /// CPUs per pod (and each run's threads).
    pub cpus: usize,
    /// The persistent volume claim that holds the sweep directory (mounted at `/sweep`).
    pub sweep_claim: String,
    /// The persistent volume claim that holds the data (mounted read-only at `/data`).
    pub data_claim: String,
}

/// The Indexed Job of a sweep of `jobs` jobs, as YAML.
pub fn indexed_job(name: &str, jobs: usize, o: &K8sOptions) -> String {
    format!(
        r#"# Written by under8k: `kubectl apply -f` this file; each pod runs one job of the sweep.
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  completionMode: Indexed
  completions: {jobs}
  parallelism: {parallelism}
  backoffLimitPerIndex: 3
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: {image}
          command: ["under8k", "sweep", "run", "/sweep", "--data", "/data", "--threads", "{cpus}"]
          resources:
            requests:
              cpu: "{cpus}"
              memory: 512Mi
            limits:
              cpu: "{cpus}"
              memory: 1Gi
          volumeMounts:
            - name: sweep
              mountPath: /sweep
            - name: data
              mountPath: /data
              readOnly: true
      volumes:
        - name: sweep
          persistentVolumeClaim:
            claimName: {sweep_claim}
        - name: data
          persistentVolumeClaim:
            claimName: {data_claim}
"#,
        parallelism = o.parallelism.max(1),
        image = o.image,
        cpus = o.cpus.max(1),
        sweep_claim = o.sweep_claim,
        data_claim = o.data_claim,
    )
}
