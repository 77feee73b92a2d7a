//! Starts a `philo up` (or one role, e.g. `philo ingest-api`) child on a scratch data directory
//! and loopback port 0.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Spawns this very binary as `philo up` with `env` added, and waits until it is ready.
    pub async fn start(data_dir: &Path, env: &[(&str, String)]) -> Result<Self> {
        Self::start_role("up", data_dir, env).await
    }

    /// Spawns this binary as `philo <role>` (`up` or `ingest-api`) and waits until it is ready.
    pub async fn start_role(role: &str, data_dir: &Path, env: &[(&str, String)]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let addr_file = data_dir.join("run").join("ingest-api.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(exe);
        cmd.arg(role)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("PHILO__TELEMETRY__LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning philo {role}"))?;
        let started = Instant::now();
        let base = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                break format!("http://{}", addr.trim());
            }
            if let Some(status) = child.try_wait()? {
                bail!("server exited early: {status}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("server did not start within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = reqwest::Client::new();
        loop {
            if client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("server not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, base })
    }

    /// Peak resident set size of the server process so far (VmHWM), bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    }

    /// CPU time (user + system, every thread's) the server process has used so far, seconds:
    /// what a phase cost the server, less sensitive to what else shares the cores than a rate.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name (which may hold spaces or parentheses): state is
        // field 3 of the line, utime and stime are 14 and 15, in clock ticks.
        let after_name = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ, the unit of these fields, is 100 on every Linux architecture Philo runs on.
        Some(ticks as f64 / 100.0)
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SIGTERM for a graceful stop.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }
}
