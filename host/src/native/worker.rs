//! `ironhost __agent-worker`: the agent's process under `ironhost start`. It reads its setup
//! from the host, isolates itself, starts Python with `ironhost._native` (whose hosted agent
//! sends every call to the host over the socket) and runs the script.

use std::os::unix::net::UnixStream;

use super::agent::install_hosted;
use super::interpreter;
use crate::agent::ipc::{self, ToHost, ToWorker};
use crate::agent::remote::{OnEnviron, Remote};
use crate::agent::sandbox;

/// `ironhost __agent-worker`: the agent's process. Reads its setup from the host, isolates
/// itself, starts Python and runs the script; returns the exit code (128 + the signal for an
/// agent stopped by SIGINT or SIGTERM).
pub fn worker_main() -> i32 {
    let mut socket = match sandbox::worker_socket() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ironhost: {e}");
            return 2;
        }
    };
    let setup = match ipc::read_frame::<ToWorker>(&mut socket) {
        Ok(Some((ToWorker::Setup(setup), _))) => *setup,
        _ => {
            eprintln!("ironhost: the agent's process got no setup from the host");
            return 2;
        }
    };
    let fail = |socket: &mut UnixStream, message: String| {
        let _ = ipc::write_frame(socket, &ToHost::Failed { message }, b"");
        1
    };
    // Isolation first, while this process has one thread and before any agent code runs.
    let started = std::time::Instant::now();
    if setup.isolate
        && let Err(e) = sandbox::isolate(
            &setup.hidden,
            setup.egress == crate::config::egress::EgressMode::GovernedOnly,
        )
    {
        return fail(
            &mut socket,
            format!(
                "cannot isolate the agent from the host's secrets: {e}; \
                 `isolation = \"process\"` in ironhost.toml (or IRONHOST_ISOLATION=process) \
                 runs agents without it, able to read the ironhost home"
            ),
        );
    }
    let isolation_us = started.elapsed().as_micros() as u64;
    let link = match socket.try_clone() {
        Ok(s) => s,
        Err(e) => return fail(&mut socket, format!("cannot use the host's socket: {e}")),
    };
    let on_environ: OnEnviron = Box::new(|set, unset| {
        // Not on the reader: it must keep handing replies out while this waits for the GIL.
        let _ = std::thread::Builder::new()
            .name("ironhost-environ".to_owned())
            .spawn(move || {
                if let Err(e) = interpreter::update_environ(&set, &unset) {
                    eprintln!(
                        "ironhost: cannot update the agent's environment: {}",
                        interpreter::describe(&e)
                    );
                }
            });
    });
    let remote = match Remote::connect(link, on_environ) {
        Ok(r) => r,
        Err(e) => return fail(&mut socket, format!("cannot serve the host's socket: {e}")),
    };
    install_hosted(remote.clone());
    let started = std::time::Instant::now();
    if let Err(e) = interpreter::start(setup.venv.as_deref()) {
        return fail(
            &mut socket,
            format!("cannot start Python: {}", interpreter::describe(&e)),
        );
    }
    match interpreter::prepare(
        &setup.env,
        &setup.upstreams,
        setup.egress == crate::config::egress::EgressMode::GovernedOnly,
    ) {
        Ok(_) => {}
        Err(e) => {
            return fail(
                &mut socket,
                format!("cannot prepare Python: {}", interpreter::describe(&e)),
            );
        }
    }
    remote.report(&ToHost::Ready {
        isolation_us,
        python_us: started.elapsed().as_micros() as u64,
    });
    let code = match interpreter::run_script(&setup.script, &setup.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ironhost: agent runner: {}", interpreter::describe(&e));
            1
        }
    };
    match crate::agent::status::signal_received() {
        Some(sig) => 128 + sig,
        None => code,
    }
}
