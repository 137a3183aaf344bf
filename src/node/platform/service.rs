//! `edgefarm node --service`: the node run by the Windows service manager.
//!
//! The service manager starts the program and, through [`windows_service`], calls
//! `service_main` on a thread of its own; the node runs there exactly as from a console. A stop
//! (`sc stop`, the Services panel, system shutdown) becomes the same request as Ctrl-C: the
//! node drains (running tasks finish and are acked) and the service reports `STOPPED` with the
//! node's exit code. A second stop while draining stops at once, as a second Ctrl-C does.

use std::ffi::OsString;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};

/// Ignored for a service that has its own process, but the API wants one.
const NAME: &str = "edgefarm-node";
/// How long the manager is told a drain may take before it reports the stop as hung. A drain
/// waits for running renders, so this is a hint, not a limit: the node keeps draining.
const STOP_HINT: Duration = Duration::from_secs(600);

/// What runs as the service: the node; its exit code.
pub type Body = Box<dyn FnOnce() -> u32 + Send>;

/// Wakes [`super::Signals::next`] with a stop request.
pub(super) static STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();
static BODY: Mutex<Option<Body>> = Mutex::new(None);
static HANDLE: Mutex<Option<ServiceStatusHandle>> = Mutex::new(None);
static EXIT: AtomicU32 = AtomicU32::new(1);

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the service manager and runs `body` as the service; returns `body`'s
/// exit code once the service has stopped. Fails at once when the process was not started by
/// the service manager (from a console, say).
pub fn run_as_service(body: Body) -> std::io::Result<u32> {
    *BODY.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    windows_service::service_dispatcher::start(NAME, ffi_service_main).map_err(|e| {
        std::io::Error::other(format!(
            "not started by the Windows service manager ({e}); create the service with \
             `sc create NAME binPath= \"C:\\path\\edgefarm.exe node --service --config ...\"`"
        ))
    })?;
    Ok(EXIT.load(Ordering::SeqCst))
}

fn service_main(_arguments: Vec<OsString>) {
    let handle = match service_control_handler::register(NAME, on_control) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!("could not register with the service manager: {e}");
            return;
        }
    };
    *HANDLE.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    report(ServiceState::Running, ServiceExitCode::NO_ERROR);
    let body = BODY.lock().unwrap_or_else(|e| e.into_inner()).take();
    let code = body.map_or(1, |body| body());
    EXIT.store(code, Ordering::SeqCst);
    let exit = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(code)
    };
    report(ServiceState::Stopped, exit);
}

fn on_control(control: ServiceControl) -> ServiceControlHandlerResult {
    match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            tracing::info!("the service manager asks the node to stop");
            report(ServiceState::StopPending, ServiceExitCode::NO_ERROR);
            STOP.notify_one();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    }
}

fn report(state: ServiceState, exit_code: ServiceExitCode) {
    let Some(handle) = *HANDLE.lock().unwrap_or_else(|e| e.into_inner()) else {
        return;
    };
    let controls_accepted = match state {
        // A stop while draining is the second stop: it ends the drain at once.
        ServiceState::Running | ServiceState::StopPending => {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        }
        _ => ServiceControlAccept::empty(),
    };
    let status = ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint: if state == ServiceState::StopPending {
            STOP_HINT
        } else {
            Duration::ZERO
        },
        process_id: None,
    };
    if let Err(e) = handle.set_service_status(status) {
        tracing::warn!("could not report {state:?} to the service manager: {e}");
    }
}
