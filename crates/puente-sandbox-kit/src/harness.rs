//! Serving a sandbox: `serve(listener, app, shutdown)` for a listener the
//! caller bound (tests bind `127.0.0.1:0`), and a [`Server`] handle for a
//! sandbox running in this process, which knows its address and stops the
//! server when dropped or when [`Server::stop`] is awaited.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Error;

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in progress finish. Handlers can extract the caller's address
/// (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Binds `addr` (`127.0.0.1:8089`, `127.0.0.1:0` for any free port).
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Resolves when the [`Server`] holding it is stopped or dropped.
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A dropped sender (the handle dropped) stops the server too.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A server running in this process (tests, the demo, the CLI).
pub struct Server {
    addr: SocketAddr,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serves `app` on `listener` in a task of its own.
    pub fn start(listener: TcpListener, app: Router) -> Result<Server, Error> {
        Server::spawn(listener, move |listener, shutdown| {
            serve(listener, app, shutdown)
        })
    }

    /// Serves `app` on a free port of 127.0.0.1.
    pub async fn local(app: Router) -> Result<Server, Error> {
        Server::start(bind("127.0.0.1:0").await?, app)
    }

    /// Runs a service written as `run(listener, shutdown)` in a task of its
    /// own: one that does more than serve a router (starts deliveries,
    /// saves its state once the server has stopped).
    pub fn spawn<F, Fut>(listener: TcpListener, run: F) -> Result<Server, Error>
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().map_err(Error::NoAddress)?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(listener, Shutdown(rx)));
        Ok(Server {
            addr,
            url: format!("http://{addr}"),
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL a client is given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server and waits until it has stopped (and whatever the
    /// service does after that, such as a last save, is done).
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
