//! Running the loaded balancer on a frame (BPF_PROG_TEST_RUN): the verdict
//! and output frame for packet tests, the kernel's time per run for benches.

use std::time::Duration;

use aya::{TestRun, TestRunOptions};

use crate::dataplane::Dataplane;
use crate::error::{DataplaneError, Result};
use crate::spec::XdpAction;

impl Dataplane {
    /// Runs the balancer once on `frame` (BPF_PROG_TEST_RUN) and returns its
    /// verdict and the frame as it left. With `ingress_ifindex` the FIB lookup
    /// runs as if the frame arrived there: that index is looked up in the
    /// calling thread's network namespace, so enter it first.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
    ) -> Result<(XdpAction, Vec<u8>)> {
        let (action, frame, _) = self.run(frame, ingress_ifindex, 1, true)?;
        Ok((action, frame))
    }

    /// Runs the balancer `repeat` times on `frame` and returns the last verdict
    /// and the kernel's mean time per run. The kernel does not restore the
    /// frame between runs: from the second on, the program sees its own output.
    pub fn time_run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
        repeat: u32,
    ) -> Result<(XdpAction, Duration)> {
        let (action, _, duration) = self.run(frame, ingress_ifindex, repeat, false)?;
        Ok((action, duration))
    }

    fn run(
        &self,
        frame: &[u8],
        ingress_ifindex: Option<u32>,
        repeat: u32,
        want_output: bool,
    ) -> Result<(XdpAction, Vec<u8>, Duration)> {
        let program = self.program()?;
        // Room for the head to grow by the kernel's whole XDP headroom.
        let mut out = if want_output {
            vec![0u8; frame.len() + 256]
        } else {
            Vec::new()
        };
        let ctx = ingress_ifindex.map(|index| xdp_md(frame.len(), index));
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: want_output.then_some(&mut out[..]),
            ctx_in: ctx.as_ref().map(|c| &c[..]),
            repeat,
            ..TestRunOptions::default()
        };
        let result = program
            .test_run(options)
            .map_err(|source| DataplaneError::Program {
                what: format!("test run on a {}-byte frame", frame.len()),
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok((
            XdpAction::from_code(result.return_value)?,
            out,
            result.duration,
        ))
    }
}

/// `struct xdp_md` for a test run: the whole frame is packet data, arriving on `ifindex`, queue 0.
pub fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let fields: [u32; 6] = [0, frame_len as u32, 0, ifindex, 0, 0];
    let mut bytes = [0u8; 24];
    for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    bytes
}

/// Keeps the calling thread, and so its test runs, on CPU `cpu`: what they
/// see of per-CPU state (SYN tables, next-hop cache, round-robin cursors) is
/// then one CPU's, as for a flow whose packets RSS sends to one CPU.
pub fn stay_on_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, applied to this thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
}

/// [`stay_on_cpu`] on the CPU the calling thread runs on now.
pub fn stay_on_this_cpu() {
    // SAFETY: sched_getcpu only reads the calling thread's CPU.
    let cpu = unsafe { libc::sched_getcpu() };
    stay_on_cpu(cpu.max(0) as usize);
}
