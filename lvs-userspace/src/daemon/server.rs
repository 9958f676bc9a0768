//! The control socket: one JSON request per line, one response per request.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};
use tracing::{debug, warn};

use super::Daemon;
use crate::control::{Request, Response};

/// Binds the socket: parent directory created, a stale socket from a dead lvsd replaced, a live
/// one refused, mode 0600 (only root may drive the director).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another lvsd is already serving {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts clients until the task is dropped.
pub async fn serve(listener: UnixListener, daemon: Arc<Mutex<Daemon>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let d = daemon.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, d).await {
                        debug!(error = %e, "control client ended");
                    }
                });
            }
            Err(e) => warn!(error = %e, "accept on control socket failed"),
        }
    }
}

async fn client(stream: UnixStream, daemon: Arc<Mutex<Daemon>>) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                // Map syscalls block, so the worker steps out of the async pool for them
                // (`block_in_place`) but runs them itself: handing every request to another
                // thread (`spawn_blocking`) cost two context switches per request, most of the
                // time of an `ipvsadm -R` of 110 000 lines.
                tokio::task::block_in_place(|| daemon.lock().expect("daemon lock").handle(req))
            }
            Err(e) => Response::Error {
                errno: crate::control::Errno::Inval,
                detail: format!("malformed request: {e}"),
            },
        };
        let mut out = serde_json::to_string(&resp)?;
        out.push('\n');
        w.write_all(out.as_bytes()).await?;
    }
    Ok(())
}
