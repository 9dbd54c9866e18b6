//! Parallel gzip: compression is the slow part of a layer, and a layer is written when
//! a Go build ends, often while cores sit idle. So the tar stream is cut into
//! fixed-size chunks compressed on every core at once, each into its own gzip member,
//! written in order (as pigz-style parallel gzip does; every gzip reader reads
//! concatenated members as one stream). The chunk size is fixed, not derived from the
//! core count, and whether a member is stored or deflated depends on its bytes alone,
//! so the bytes are the same on any machine.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

use libdeflater::{CompressionLvl, Compressor};

/// Bytes of tar stream per gzip member: large enough that restarting the compressor's
/// dictionary costs well under 1% in size, small enough to spread a few-MB layer over
/// the cores.
pub(super) const GZIP_MEMBER: usize = 1 << 20;

/// A writer that gzips what it is given in [`GZIP_MEMBER`]-sized members, up to one
/// member per core compressing at a time, while the caller goes on filling the next:
/// members are written in order as they come back.
pub(super) struct ParallelGzip<W: Write> {
    inner: W,
    /// The member being filled.
    current: Vec<u8>,
    /// Members handed to a thread, oldest first.
    compressing: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    threads: usize,
}

impl<W: Write> ParallelGzip<W> {
    pub(super) fn new(inner: W) -> Self {
        ParallelGzip {
            inner,
            current: Vec::with_capacity(GZIP_MEMBER),
            compressing: VecDeque::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Hands `member` to a thread of its own, once fewer than one per core are busy;
    /// what is done already goes out now, in order, so that a reader following the
    /// file gets it while the rest is compressed.
    fn submit(&mut self, member: Vec<u8>) -> io::Result<()> {
        while self.compressing.len() >= self.threads {
            self.write_oldest(true)?;
        }
        let (done, compressed) = mpsc::sync_channel(1);
        std::thread::spawn(move || {
            // The receiver only goes when the layer failed: nothing to tell then.
            let _ = done.send(gzip_member(&member));
        });
        self.compressing.push_back(compressed);
        while self.write_oldest(false)? {}
        Ok(())
    }

    /// Writes the oldest member handed out if it is compressed (with `wait`, once it
    /// is); says whether there was one to write.
    fn write_oldest(&mut self, wait: bool) -> io::Result<bool> {
        let Some(oldest) = self.compressing.front() else {
            return Ok(false);
        };
        let member = match (wait, oldest.try_recv()) {
            (_, Ok(member)) => Some(member),
            (false, Err(mpsc::TryRecvError::Empty)) => return Ok(false),
            (true, Err(mpsc::TryRecvError::Empty)) => oldest.recv().ok(),
            (_, Err(mpsc::TryRecvError::Disconnected)) => None,
        };
        self.compressing.pop_front();
        let member =
            member.unwrap_or_else(|| Err(io::Error::other("a compression thread panicked")))?;
        self.inner.write_all(&member)?;
        Ok(true)
    }

    /// Compresses what is left and returns the inner writer.
    pub(super) fn finish(mut self) -> io::Result<W> {
        if !self.current.is_empty() || self.compressing.is_empty() {
            let last = std::mem::take(&mut self.current);
            self.submit(last)?;
        }
        while self.write_oldest(true)? {}
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_MEMBER - self.current.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == GZIP_MEMBER {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(GZIP_MEMBER));
            self.submit(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One gzip member, by libdeflate: no file name, time 0, OS "unknown", so that only
/// the bytes shape it. libdeflate compresses a whole buffer at a time, which is what a
/// member is, and at its fastest level takes the time zlib's fastest takes for output
/// 13% smaller (a 47 MB Go binary: 214 ms either way, 21.4 MB against 24.8 MB). Bytes
/// that are compressed already (Go's DWARF sections, a PNG in kodata/) are stored
/// rather than deflated: deflating them is the slowest work per byte there is (2.5
/// times that of code, on a binary whose DWARF is a fifth of it) and makes them larger.
fn gzip_member(chunk: &[u8]) -> io::Result<Vec<u8>> {
    let level = if looks_compressed(chunk) { 0 } else { 1 };
    let level = CompressionLvl::new(level)
        .map_err(|e| io::Error::other(format!("gzip level {level}: {e:?}")))?;
    let mut compressor = Compressor::new(level);
    let mut member = vec![0; compressor.gzip_compress_bound(chunk.len())];
    let written = compressor
        .gzip_compress(chunk, &mut member)
        .map_err(|e| io::Error::other(format!("gzip: {e}")))?;
    member.truncate(written);
    Ok(member)
}

/// Whether `chunk` carries nearly 8 bits of information per byte, judged on 16
/// slices of 4 KiB spread over it: compressed data does, machine code and tables carry
/// 1.5 to 5 (both as collision entropy, -log2 of the chance that two bytes drawn are
/// equal). Counted in integers, so that the judgement, and so the layer's bytes,
/// depend on the bytes alone, on any machine.
fn looks_compressed(chunk: &[u8]) -> bool {
    const SLICES: usize = 16;
    const SLICE: usize = 4096;
    /// Entropy above 7.9 bits: the sum of squared byte counts over the 65536 bytes
    /// sampled below 65536² / 2^7.9.
    const MAX_SQUARES: u64 = 17_981_374;
    if chunk.len() < SLICES * SLICE {
        return false;
    }
    let mut counts = [0u64; 256];
    let stride = chunk.len() / SLICES;
    for slice in 0..SLICES {
        let start = slice * stride;
        for &byte in &chunk[start..start + SLICE] {
            counts[usize::from(byte)] += 1;
        }
    }
    counts.iter().map(|c| c * c).sum::<u64>() < MAX_SQUARES
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder as GzDecoder;
    use std::io::Read;

    /// The compressed bytes depend on the input and the member size only: not on how
    /// many cores compressed them, nor on how the writes were cut.
    #[test]
    fn parallel_gzip_is_the_same_on_any_core_count_and_reads_back_whole() {
        let data: Vec<u8> = (0..5 * GZIP_MEMBER + 12345)
            .map(|i| (i * 7 % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let gzip_with = |input: &[u8], threads: usize, piece: usize| {
            let mut gzip = ParallelGzip::new(Vec::new());
            gzip.threads = threads;
            for chunk in input.chunks(piece) {
                gzip.write_all(chunk).unwrap();
            }
            gzip.finish().unwrap()
        };
        let one = gzip_with(&data, 1, 8192);
        assert_eq!(one, gzip_with(&data, 3, 100_000));
        assert_eq!(one, gzip_with(&data, 8, GZIP_MEMBER));
        // A stream that ends where a member does gets no empty member after it, on any
        // core count.
        let whole = &data[..2 * GZIP_MEMBER];
        let two = gzip_with(whole, 1, GZIP_MEMBER);
        assert_eq!(two, gzip_with(whole, 2, 4096));
        assert_eq!(two, gzip_with(whole, 5, GZIP_MEMBER));
        assert_eq!(two.len(), {
            let first = gzip_with(&whole[..GZIP_MEMBER], 1, GZIP_MEMBER).len();
            first + gzip_with(&whole[GZIP_MEMBER..], 1, GZIP_MEMBER).len()
        });
        let mut back = Vec::new();
        GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // Empty input is still a gzip stream.
        let empty = gzip_with(&[], 2, 1);
        let mut back = Vec::new();
        GzDecoder::new(&empty[..]).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }

    /// Compressed bytes are stored, not deflated (which would make them larger);
    /// other bytes are deflated; both read back whole.
    #[test]
    fn compressed_bytes_are_stored_and_the_rest_deflated() {
        // Bytes with no pattern, as compressed data has: an xorshift stream.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..GZIP_MEMBER)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let code: Vec<u8> = b"func main() { fmt.Println(\"hello\", 42) }\n"
            .iter()
            .copied()
            .cycle()
            .take(GZIP_MEMBER)
            .collect();
        assert!(looks_compressed(&noise));
        assert!(!looks_compressed(&code));
        let stored = gzip_member(&noise).unwrap();
        // Stored blocks cost 5 bytes per 64 KiB, where deflate added about 5%.
        assert!(stored.len() < noise.len() + 200, "{}", stored.len());
        assert!(gzip_member(&code).unwrap().len() < code.len() / 4);
        for (input, member) in [(&noise, stored), (&code, gzip_member(&code).unwrap())] {
            let mut back = Vec::new();
            GzDecoder::new(&member[..]).read_to_end(&mut back).unwrap();
            assert_eq!(&back, input);
        }
        // Too little to judge: deflated.
        assert!(!looks_compressed(&noise[..1000]));
    }
}
