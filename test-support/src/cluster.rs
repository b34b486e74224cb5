//! A PostgreSQL cluster of a test's own (scripts/pg-cluster.sh), for faults that would disturb
//! other tests: restarts, shutdowns, connection limits, password and TLS set-ups.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    parent: PathBuf,
    dir: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    pub port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster.sh")
}

impl Cluster {
    /// Creates and starts a cluster; `args` as for `pg-cluster.sh create`.
    pub fn create(args: &[&str]) -> Cluster {
        let parent = std::env::temp_dir().join(format!("lti-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&parent).expect("create the cluster's parent directory");
        // As root the server runs as another user, who must reach the cluster's directory.
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755))
            .expect("open the parent directory");
        let dir = parent.join("cluster");
        let output = Command::new(script())
            .arg("create")
            .arg(&dir)
            .args(args)
            .output()
            .expect("run scripts/pg-cluster.sh");
        assert!(
            output.status.success(),
            "pg-cluster.sh create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout)
            .expect("URL")
            .trim()
            .to_string();
        let port = std::fs::read_to_string(dir.join("port"))
            .expect("port file")
            .trim()
            .parse()
            .expect("port number");
        Cluster {
            parent,
            dir,
            url,
            port,
        }
    }

    fn control(&self, action: &str) {
        let status = Command::new(script())
            .arg(action)
            .arg(&self.dir)
            .status()
            .expect("run scripts/pg-cluster.sh");
        assert!(status.success(), "pg-cluster.sh {action} failed");
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
        std::fs::read_to_string(self.dir.join("server.log")).expect("read the server log")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("destroy")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}
