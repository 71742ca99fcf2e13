//! `O_DIRECT` helpers shared by uploads ([`super::upload_file`]) and
//! streamed reads of large blobs ([`super::FilesystemStore`]): turning the
//! flag on and off, aligned buffers without unsafe code, aligned reads.
//!
//! Key decision: large blobs live outside the page cache in this store.
//! They are written with `O_DIRECT` (see [`super::upload_file`] for why), so
//! a streamed read of one would otherwise fill fresh page-cache pages, the
//! very cost the write avoided; it reads with `O_DIRECT` too. Whatever the
//! filesystem refuses falls back to ordinary buffered I/O.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Alignment of direct I/O (covers 512-byte and 4 KiB logical blocks).
pub const ALIGN: usize = 4096;

/// Turns `O_DIRECT` on or off for `file`.
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_fd();
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?);
    let flags = if on { flags | OFlag::O_DIRECT } else { flags - OFlag::O_DIRECT };
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// The offset of the first [`ALIGN`]-aligned address in `buf` (a buffer
/// allocated with `ALIGN` bytes of slack always has one).
pub fn aligned_start(buf: &[u8]) -> usize {
    buf.as_ptr().align_offset(ALIGN).min(ALIGN)
}

/// Reads exactly `len` bytes at `position` of `file`, which is open with
/// `O_DIRECT`: the read covers whole blocks into an aligned buffer and the
/// bytes asked for are sliced out of it (no copy).
pub fn read_exact_direct(file: &File, position: u64, len: usize) -> io::Result<Bytes> {
    let lead = (position % ALIGN as u64) as usize;
    let span = (lead + len).div_ceil(ALIGN) * ALIGN;
    let mut buf = vec![0u8; span + ALIGN];
    let start = aligned_start(&buf);
    let mut got = 0;
    while got < lead + len {
        // Whole blocks from an aligned offset; the file's end may cut the last one short.
        let n = file.read_at(&mut buf[start + got..start + span], position - lead as u64 + got as u64)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ended before the range read"));
        }
        got += n;
    }
    Ok(Bytes::from(buf).slice(start + lead..start + lead + len))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn direct_reads_return_exact_unaligned_ranges() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..3 * ALIGN + 123).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        file.as_file().sync_all().unwrap();
        let reader = File::open(file.path()).unwrap();
        // Where the filesystem refuses O_DIRECT the same reads run buffered.
        let _ = set_direct(&reader, true);
        for (position, len) in [(0usize, data.len()), (1, 10), (ALIGN - 1, 2), (ALIGN, ALIGN), (100, data.len() - 100), (data.len() - 1, 1)] {
            let got = read_exact_direct(&reader, position as u64, len).unwrap();
            assert_eq!(&got[..], &data[position..position + len], "position {position} len {len}");
        }
        assert!(read_exact_direct(&reader, 10, data.len()).is_err(), "a read past the end must fail");
    }
}
