//! Shared by the end-to-end tests: the `philo` binary, started as a real process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test, with quiet logs and no inherited tail settings.
pub fn philo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_philo"));
    c.env("PHILO__TELEMETRY__LOG_LEVEL", "warn")
        .env_remove("PHILO_URL")
        .env_remove("PHILO_ADMIN_TOKEN");
    c
}

/// The binary with `env` added (e.g. the log backend of the run).
pub fn philo_with(env: &[(&str, &str)]) -> Command {
    let mut c = philo();
    c.envs(env.iter().copied());
    c
}

/// The `log.backend` URL of the Kafka broker at `bootstrap` (tansu batches must hold one
/// record: see `KafkaLogConfig::batch_max_records`).
pub fn kafka_url(bootstrap: &str) -> String {
    format!("kafka://{bootstrap}?batch_max_records=1")
}

/// Registers `name` (password "a long passphrase"); returns its user id and access token.
pub async fn register_user(client: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let r = register_body(client, base, name, "a long passphrase").await;
    (
        r["user_id"].as_str().expect("registered").to_owned(),
        r["access_token"].as_str().unwrap().to_owned(),
    )
}

/// Submits `action` as the owner of `token`; asserts 202 and returns the answer.
pub async fn act(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    action: serde_json::Value,
) -> serde_json::Value {
    let r = client
        .post(format!("{base}/v1/actions"))
        .bearer_auth(token)
        .json(&action)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json().await.unwrap()
}

/// Starts `philo up` on `data_dir` and loopback port 0 with `env` added; returns the child and
/// the API's base URL once the server has written its address.
pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let addr_file = data_dir.join("run").join("ingest-api.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut child = philo()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn philo up");
    let started = Instant::now();
    loop {
        if let Ok(addr) = std::fs::read_to_string(&addr_file) {
            return (child, format!("http://{}", addr.trim()));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("philo up exited during start: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "philo up did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers `username` and returns its access token.
pub async fn register(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> String {
    let r = register_body(client, base, username, password).await;
    r["access_token"].as_str().expect("registered").to_owned()
}

async fn register_body(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> serde_json::Value {
    client
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({"username": username, "email": format!("{username}@example.com"), "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// SIGTERM, then waits (at most 20 s) for the process to exit; returns its status.
pub fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let stopped = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no graceful exit within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child (SIGKILL) if the test ends without stopping it, so a failing assertion
/// leaves no server behind.
pub struct Guard(Option<Child>);

impl Guard {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// SIGTERM and wait, as [`terminate`].
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(self.0.take().expect("running"))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// moto's S3 server, installed by `scripts/test.sh` into the cached venv. Missing it fails the
/// test (in CI always; locally unless `PHILO_SKIP_MOTO=1`, then `None`: skip).
pub fn moto_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PHILO_MOTO_SERVER")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/philo/venv/bin/moto_server")
        });
    if path.exists() {
        return Some(path);
    }
    let skip = std::env::var("PHILO_SKIP_MOTO").is_ok_and(|v| v == "1")
        && std::env::var_os("CI").is_none();
    assert!(
        skip,
        "moto_server not found at {} (run scripts/test.sh, or set PHILO_SKIP_MOTO=1 outside CI)",
        path.display()
    );
    eprintln!("SKIPPING an S3 test: moto_server not installed and PHILO_SKIP_MOTO=1");
    None
}

/// Starts moto's server on a free loopback port with `bucket` created; returns it (killed when
/// dropped) and its endpoint URL.
pub async fn start_moto(bin: &Path, bucket: &str) -> (Guard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Guard::new(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = client.put(format!("{base}/{bucket}")).send().await.unwrap();
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    (moto, base)
}

/// `philo admin create-admin` on `data` (password on stdin, as an operator would); returns
/// the process's output.
pub fn create_admin(
    data: &Path,
    env: &[(&str, &str)],
    username: &str,
    password: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut admin = philo_with(env)
        .args(["admin", "create-admin", "--username", username, "--email"])
        .arg(format!("{username}@example.com"))
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    admin.wait_with_output().unwrap()
}
