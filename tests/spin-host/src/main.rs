//! A test host for the edgefarm Spin component, built from crates.io (no Spin runtime can be
//! installed here): wasmtime 48 with `wasi:http@0.3`, serving the component over HTTP on
//! loopback the way `spin up` does — a fresh instance per request, requests in parallel — and
//! giving it Spin's key-value interfaces over a SQLite file that outlives the host.
//!
//! ```text
//! edgefarm-spin-host --component build/spin/edgefarm.wasm --listen 127.0.0.1:3000 \
//!     --db .spin/kv.db [--env NAME=VALUE]...
//! ```

mod interfaces;
mod kv;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use interfaces::{atomics, batch, spin_kv, wasi_store, Kv, KvData, KvView};

/// Per-request state, like a Spin instance's.
struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: Kv,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: wasmtime_wasi_http::default_hooks(),
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

struct Args {
    component: PathBuf,
    listen: SocketAddr,
    db: PathBuf,
    env: Vec<(String, String)>,
}

fn args() -> Result<Args> {
    let usage = "usage: edgefarm-spin-host --component FILE.wasm --listen ADDR --db FILE.db [--env NAME=VALUE]...";
    let mut it = std::env::args().skip(1);
    let (mut component, mut listen, mut db, mut env) = (None, None, None, Vec::new());
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value; {usage}"))
        };
        match flag.as_str() {
            "--component" => component = Some(PathBuf::from(value()?)),
            "--listen" => listen = Some(value()?.parse().context("--listen: not an address")?),
            "--db" => db = Some(PathBuf::from(value()?)),
            "--env" => {
                let v = value()?;
                let (k, v) = v.split_once('=').context("--env wants NAME=VALUE")?;
                env.push((k.to_string(), v.to_string()));
            }
            other => bail!("unknown argument {other:?}; {usage}"),
        }
    }
    Ok(Args {
        component: component.context(usage)?,
        listen: listen.context(usage)?,
        db: db.context(usage)?,
        env,
    })
}

/// What every request shares.
struct Host {
    engine: Engine,
    pre: ServicePre<Ctx>,
    db: kv::Db,
    env: Vec<(String, String)>,
}

type Body = BoxBody<Bytes, anyhow::Error>;

fn text(status: u16, msg: String) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(msg)).map_err(|e| match e {}).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r
}

/// Runs one request in a fresh instance. The instance lives in its own task for as long as
/// its response body streams (an event stream runs for many seconds after the headers).
async fn serve(
    host: Arc<Host>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Body> {
    let (mut parts, body) = req.into_parts();
    // As Spin's HTTP trigger: the client's address, replacing whatever the client sent.
    if let Ok(v) = http::HeaderValue::from_str(&peer.to_string()) {
        parts.headers.insert("spin-client-addr", v);
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(400, format!("reading the request: {e}")),
    };
    let req = http::Request::from_parts(parts, Full::new(body));
    let (head_tx, head_rx) = oneshot::channel();
    let (body_tx, mut body_rx) = mpsc::channel::<Result<Frame<Bytes>>>(16);
    tokio::spawn(async move {
        if let Err(e) = run_instance(&host, req, head_tx, body_tx).await {
            eprintln!("spin-host: request failed: {e:#}");
        }
    });
    let Ok(head) = head_rx.await else {
        return text(500, "the component failed (see the host's log)".into());
    };
    let frames = futures::stream::poll_fn(move |cx| body_rx.poll_recv(cx));
    hyper::Response::from_parts(head, StreamBody::new(frames).boxed())
}

async fn run_instance(
    host: &Host,
    req: http::Request<Full<Bytes>>,
    head_tx: oneshot::Sender<http::response::Parts>,
    body_tx: mpsc::Sender<Result<Frame<Bytes>>>,
) -> Result<()> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stderr();
    for (k, v) in &host.env {
        wasi.env(k, v);
    }
    let mut store = Store::new(
        &host.engine,
        Ctx {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            kv: Kv {
                db: host.db.clone(),
                allowed: vec!["default".into()],
            },
        },
    );
    let (request, io) =
        wasmtime_wasi_http::p3::Request::from_http(wasmtime_wasi_http::default_hooks(), req);
    let service = host.pre.instantiate_async(&mut store).await?;
    store
        .run_concurrent(async move |acc| {
            let respond = async {
                let resp = service
                    .handle(acc, request)
                    .await?
                    .map_err(|e| anyhow::anyhow!("handler error: {e:?}"))?;
                let resp = acc.with(|a| resp.into_http(a, async { Ok(()) }))?;
                let (head, mut body) = resp.into_parts();
                if head_tx.send(head).is_err() {
                    return Ok(()); // the client went away
                }
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| anyhow::anyhow!("response body: {e:?}"));
                    let failed = frame.is_err();
                    if body_tx.send(frame).await.is_err() || failed {
                        break;
                    }
                }
                anyhow::Ok(())
            };
            let request_body =
                async { io.await.map_err(|e| anyhow::anyhow!("request body: {e:?}")) };
            tokio::try_join!(respond, request_body)?;
            anyhow::Ok(())
        })
        .await??;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    let engine = Engine::new(&config)?;
    let started = std::time::Instant::now();
    let component = Component::from_file(&engine, &args.component)
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", args.component.display()))?;
    let compiled_ms = started.elapsed().as_millis();
    let mut linker: Linker<Ctx> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    fn view(c: &mut Ctx) -> KvView<'_> {
        KvView {
            kv: &c.kv,
            table: &mut c.table,
        }
    }
    spin_kv::add_to_linker::<_, KvData>(&mut linker, view)?;
    wasi_store::add_to_linker::<_, KvData>(&mut linker, view)?;
    atomics::add_to_linker::<_, KvData>(&mut linker, view)?;
    batch::add_to_linker::<_, KvData>(&mut linker, view)?;
    let pre = ServicePre::new(linker.instantiate_pre(&component)?)?;
    let db = kv::Db::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?;
    let host = Arc::new(Host {
        engine,
        pre,
        db,
        env: args.env,
    });

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "spin-host: serving {} on http://{} (compiled in {compiled_ms} ms), store {}",
        args.component.display(),
        listener.local_addr()?,
        args.db.display()
    );
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (conn, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => break,
        };
        let host = host.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, Infallible>(serve(host, peer, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(conn), svc)
                .await
            {
                eprintln!("spin-host: connection: {e}");
            }
        });
    }
    Ok(())
}
