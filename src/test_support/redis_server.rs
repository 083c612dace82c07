//! Real `redis-server` processes on free loopback ports, started by the
//! tests. Without `redis-server` on the PATH a test prints `SKIPPED (redis):
//! …` and returns; in CI (`CI` set) that is a failure, never a skip.
//!
//! Not a module of the library: `src/fleet/conn.rs`'s unit tests, `tests/`
//! and `benches/` include this file with `#[path]`. It sits under `src/` so
//! that the published crate, which leaves `tests/` out, builds its own unit
//! tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether `redis-server` can be run; `false` after printing why the
/// running test is skipped.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !in_ci(),
            "redis-server is not installed and CI is set: .ci/run must install it \
             (apt-get install -y redis-server). The Redis suite never skips in CI."
        );
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        eprintln!("SKIPPED (redis): {test}: redis-server is not on the PATH (apt-get install redis-server)");
    }
    found
}

/// A free loopback port (the OS's choice, released at once).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A standalone redis-server, no persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Its TLS files, when it speaks TLS only (on `port`).
    tls: Option<TlsFiles>,
    /// Arguments besides the port, the address and persistence (ACL users,
    /// cluster mode).
    args: Vec<String>,
}

/// A TLS redis-server's files: a certificate and key the test PKI issued
/// (for serving, and for a cluster node's bus), its CA (to check client
/// certificates with), and a client certificate for redis-cli.
/// The PEM texts a TLS `redis-server` and `redis-cli` use, from a test
/// CA (`tests/fleet/secure.rs` makes them with `tests/support/pki.rs`;
/// this file does not use it, so that `src/fleet/conn.rs`'s unit tests can
/// include this file alone).
pub struct TlsPems {
    pub ca: String,
    /// The server's (and the cluster bus's) certificate and key.
    pub node_cert: String,
    pub node_key: String,
    /// `redis-cli`'s.
    pub cli_cert: String,
    pub cli_key: String,
}

struct TlsFiles {
    dir: tempfile::TempDir,
    /// Whether clients must present a certificate the CA issued.
    auth_clients: bool,
}

impl TlsFiles {
    fn write(pems: &TlsPems, auth_clients: bool) -> TlsFiles {
        let dir = tempfile::tempdir().expect("a directory for TLS files");
        for (name, pem) in [
            ("ca.pem", &pems.ca),
            ("server.pem", &pems.node_cert),
            ("server-key.pem", &pems.node_key),
            ("cli.pem", &pems.cli_cert),
            ("cli-key.pem", &pems.cli_key),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write a TLS file");
        }
        TlsFiles { dir, auth_clients }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn server_args(&self) -> Vec<String> {
        let auth = if self.auth_clients { "yes" } else { "no" };
        [
            ("--tls-cert-file", self.path("server.pem")),
            ("--tls-key-file", self.path("server-key.pem")),
            ("--tls-ca-cert-file", self.path("ca.pem")),
            ("--tls-auth-clients", auth.to_owned()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".to_owned(),
            "--cacert".to_owned(),
            self.path("ca.pem"),
            "--cert".to_owned(),
            self.path("cli.pem"),
            "--key".to_owned(),
            self.path("cli-key.pem"),
        ]
    }
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::launch(free_port(), None, Vec::new())
    }

    /// With `args` added to its command line: `--user fleet on >pw ~* +@all`
    /// (an ACL user; the default user stays, for redis-cli).
    pub fn start_with(args: &[&str]) -> RedisServer {
        Self::launch(
            free_port(),
            None,
            args.iter().map(|&a| a.to_owned()).collect(),
        )
    }

    /// TLS only, with the server certificate of `pems` (a test CA's, for
    /// `127.0.0.1`); asking clients for a certificate that CA issued when
    /// `auth_clients`.
    pub fn start_tls(pems: &TlsPems, auth_clients: bool) -> RedisServer {
        let files = TlsFiles::write(pems, auth_clients);
        Self::launch(free_port(), Some(files), Vec::new())
    }

    fn launch(port: u16, tls: Option<TlsFiles>, args: Vec<String>) -> RedisServer {
        let mut s = RedisServer {
            port,
            child: None,
            tls,
            args,
        };
        s.restart();
        s
    }

    /// `redis://127.0.0.1:port`, or `rediss://…` when it speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(files) => command
                .args(["--port", "0", "--tls-port", &port])
                .args(files.server_args()),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a command with `redis-cli` (over TLS when it speaks TLS); its
    /// output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let tls = self
            .tls
            .as_ref()
            .map(TlsFiles::cli_args)
            .unwrap_or_default();
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(tls)
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports,
/// made with `redis-cli --cluster create`; killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        Self::start_with(None)
    }

    /// Its nodes speak TLS only, clients and bus alike, with certificates
    /// `pems` holds (clients need none).
    pub fn start_tls(pems: &TlsPems) -> RedisCluster {
        Self::start_with(Some(pems))
    }

    fn start_with(pems: Option<&TlsPems>) -> RedisCluster {
        let dir = tempfile::tempdir().expect("a directory for nodes.conf");
        let nodes: Vec<RedisServer> = (0..3).map(|_| cluster_node(dir.path(), pems)).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let tls = nodes[0].tls.as_ref().map(TlsFiles::cli_args);
        let out = Command::new("redis-cli")
            .args(tls.unwrap_or_default())
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster is not ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// Each node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Runs a command with `redis-cli -c` (following redirects) at the
    /// first node; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        self.nodes[0].cli(&[&["-c"], args].concat())
    }
}

/// A cluster-enabled node, its `nodes.conf` in `dir`, its bus on a free
/// port too; over TLS with the certificates of `pems`, if given.
fn cluster_node(dir: &std::path::Path, pems: Option<&TlsPems>) -> RedisServer {
    let port = free_port();
    let mut args = vec![
        "--cluster-enabled".to_owned(),
        "yes".to_owned(),
        "--cluster-port".to_owned(),
        free_port().to_string(),
        "--cluster-config-file".to_owned(),
        format!("nodes-{port}.conf"),
        "--dir".to_owned(),
        dir.display().to_string(),
    ];
    let tls = pems.map(|pems| TlsFiles::write(pems, false));
    if tls.is_some() {
        args.extend(["--tls-cluster".to_owned(), "yes".to_owned()]);
    }
    RedisServer::launch(port, tls, args)
}
