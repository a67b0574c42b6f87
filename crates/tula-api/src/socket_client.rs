//! The client side of the API's Unix socket: a `ureq` agent whose every
//! request goes to the socket, whatever host its URL names. The CLI uses it on
//! the balancer itself; the URL's path and query are what count.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use ureq::config::Config;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};
use ureq::Agent;

/// The URL base to use with [`socket_agent`]: the host is not looked up.
pub const SOCKET_BASE: &str = "http://localhost";

/// An agent that sends every request over the Unix socket at `path`.
pub fn socket_agent(path: &Path, config: Config) -> Agent {
    Agent::with_parts(
        config,
        SocketConnector {
            path: path.to_path_buf(),
        },
        NoLookup,
    )
}

#[derive(Debug)]
struct SocketConnector {
    path: PathBuf,
}

impl<In: Transport> Connector<In> for SocketConnector {
    type Out = SocketTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _: Option<In>,
    ) -> Result<Option<SocketTransport>, ureq::Error> {
        let stream = UnixStream::connect(&self.path).map_err(|e| {
            ureq::Error::Io(std::io::Error::new(
                e.kind(),
                format!("connecting to {}: {e}", self.path.display()),
            ))
        })?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(SocketTransport { stream, buffers }))
    }
}

#[derive(Debug)]
struct SocketTransport {
    stream: UnixStream,
    buffers: LazyBuffers,
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

impl Transport for SocketTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        self.stream
            .set_write_timeout(timeout.not_zero().map(|t| *t))?;
        let output = &self.buffers.output()[..amount];
        match self.stream.write_all(output) {
            // The daemon answered (and closed) before reading a body it refuses:
            // its answer is there to read.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) if timed_out(&e) => Err(ureq::Error::Timeout(timeout.reason)),
            other => Ok(other?),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        self.stream
            .set_read_timeout(timeout.not_zero().map(|t| *t))?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match self.stream.read(input) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => return Err(ureq::Error::Timeout(timeout.reason)),
                other => break other?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // One request per connection: the daemon is local, a connect costs little.
        false
    }
}

/// The socket needs no address: any will do for ureq's bookkeeping.
#[derive(Debug)]
struct NoLookup;

impl Resolver for NoLookup {
    fn resolve(
        &self,
        _: &ureq::http::Uri,
        _: &Config,
        _: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        addrs.push(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        Ok(addrs)
    }
}
