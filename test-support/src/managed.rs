//! A server one of the project's scripts manages (scripts/pg-cluster.sh, scripts/pgbouncer.sh)
//! in a directory of its own under the system's temporary directory, destroyed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

pub(crate) struct Managed {
    script: &'static str,
    parent: PathBuf,
    /// The server's directory, inside `parent`.
    pub dir: PathBuf,
}

impl Managed {
    /// Runs `script create DIR args...` in a fresh directory; the caller reads the output.
    pub fn create(script: &'static str, name: &str, args: &[&str]) -> (Managed, Output) {
        let parent = std::env::temp_dir().join(format!("lti-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&parent).expect("create the server's parent directory");
        // As root the server runs as another user, who must reach its directory.
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755))
            .expect("open the parent directory");
        let managed = Managed {
            script,
            dir: parent.join(name),
            parent,
        };
        let output = managed
            .command("create")
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("run scripts/{script}: {err}"));
        (managed, output)
    }

    fn command(&self, action: &str) -> Command {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(self.script);
        let mut command = Command::new(script);
        command.arg(action).arg(&self.dir);
        command
    }

    /// `script ACTION DIR`, which must succeed.
    pub fn control(&self, action: &str) {
        let status = self
            .command(action)
            .status()
            .unwrap_or_else(|err| panic!("run scripts/{}: {err}", self.script));
        assert!(status.success(), "{} {action} failed", self.script);
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.command("destroy").status();
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}
