//! A PostgreSQL cluster of a test's own (scripts/pg-cluster.sh), for faults that would disturb
//! other tests: restarts, shutdowns, connection limits, password and TLS set-ups.

use crate::managed::Managed;

pub struct Cluster {
    server: Managed,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    pub port: u16,
}

impl Cluster {
    /// Creates and starts a cluster; `args` as for `pg-cluster.sh create`.
    pub fn create(args: &[&str]) -> Cluster {
        let (server, output) = Managed::create("pg-cluster.sh", "cluster", args);
        assert!(
            output.status.success(),
            "pg-cluster.sh create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout)
            .expect("URL")
            .trim()
            .to_string();
        let port = std::fs::read_to_string(server.dir.join("port"))
            .expect("port file")
            .trim()
            .parse()
            .expect("port number");
        Cluster { server, url, port }
    }

    fn control(&self, action: &str) {
        self.server.control(action);
    }

    pub fn stop(&self) {
        self.control("stop");
    }

    pub fn start(&self) {
        self.control("start");
    }

    pub fn restart(&self) {
        self.control("restart");
    }

    /// What the server has logged so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.server.dir.join("server.log")).expect("read the server log")
    }
}
