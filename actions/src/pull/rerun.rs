//! A guest whose user-data ran against another controller (an earlier run's, gone now: the
//! run was stopped and is resumed, or the guest was adopted by a later create): cloud-init
//! runs user-data once per instance, so the guest would never fetch from this run's
//! controller. Its env file tells: when it names another controller (address, fingerprint
//! or token), the run writes this run's env there over SSH, clears the old markers and runs
//! the guest's `pull.sh` again (as root on a real guest); the markers then report as usual.

use engine::executor::{ActionCall, ActionError};

use super::{userdata, PullSetup, SHORT};
use crate::ssh::{shell_quote, Connection};

impl PullSetup {
    /// Runs the guest's pull again against this run's controller when its env file names
    /// another one; `false` when it names this one or is not written yet (cloud-init has not
    /// run: it will, with this run's user-data).
    pub async fn rerun_if_stale(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<bool, ActionError> {
        let node = &call.node.name;
        let want = userdata::env_file(&self.pull_node(node, "", &[]));
        let dir = self.dir();
        let read = format!("cd {dir} 2>/dev/null && cat pull.env 2>/dev/null; exit 0");
        let have = conn
            .exec(&self.as_root(&read), SHORT)
            .await?
            .check()?
            .stdout;
        if have.is_empty() || have == want {
            return Ok(false);
        }
        call.facts.log(format!(
            "its user-data ran against another controller (an earlier run's): fetching and \
             applying again from {}",
            self.server
        ));
        // The new env comes on stdin (never in a command line: it holds the token).
        let rerun = format!(
            "umask 077; cd {dir} && cat > pull.env.tmp && mv pull.env.tmp pull.env && \
             rm -f config/spec.yaml config/complete.json pull.status pve-config/success.json \
             pve-config/failure.json && sh ./pull.sh; exit 0"
        );
        conn.exec_with_stdin(&self.as_root(&rerun), want, call.timeout)
            .await?
            .check()?;
        Ok(true)
    }

    /// `script` as root: the folder and its env are root's on a real guest (its login user
    /// has cloud-init's passwordless sudo); a simulated guest's are its own.
    fn as_root(&self, script: &str) -> String {
        match self.simulated {
            true => format!("sh -c {}", shell_quote(script)),
            false => format!("sudo -n sh -c {}", shell_quote(script)),
        }
    }
}
