//! A file that appears under its name whole or not at all, and never in place of another.
//!
//! On Linux the data goes into an unnamed file in the target directory (`O_TMPFILE`), which
//! `linkat` names at the end, failing if the name is taken: a process killed mid-way leaves
//! nothing behind, not even a temporary. Elsewhere (or on a file system without `O_TMPFILE`) it
//! is a named temporary in the same directory, linked the same way and removed on drop.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// A file being written; [`NewFile::publish`] gives it its name.
pub(crate) enum NewFile {
    /// An unnamed file (Linux `O_TMPFILE`).
    #[cfg(target_os = "linux")]
    Unnamed(File),
    /// A named temporary, deleted unless published.
    Named(tempfile::NamedTempFile),
}

impl NewFile {
    /// A new, empty file in `dir`, readable by all (mode 0644 less the umask) once published.
    pub(crate) fn in_dir(dir: &Path) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{CWD, Mode, OFlags, openat};
            let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
            match openat(CWD, dir, flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => return Ok(NewFile::Unnamed(File::from(fd))),
                // No O_TMPFILE on this file system (or kernel): a named temporary instead.
                Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".tmp-under8k-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = builder.tempfile_in(dir)?;
        Ok(NewFile::Named(tmp))
    }

    /// The open file.
    pub(crate) fn file(&mut self) -> &mut File {
        match self {
            #[cfg(target_os = "linux")]
            NewFile::Unnamed(f) => f,
            NewFile::Named(t) => t.as_file_mut(),
        }
    }

    /// Syncs the data and gives the file the name `target`, unless that name is taken: then
    /// [`io::ErrorKind::AlreadyExists`], and the file there is left as it is.
    pub(crate) fn publish(mut self, target: &Path) -> io::Result<()> {
        self.file().sync_all()?;
        match self {
            #[cfg(target_os = "linux")]
            NewFile::Unnamed(f) => {
                use rustix::fs::{AtFlags, CWD, linkat};
                use std::os::fd::AsRawFd;
                let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
                linkat(CWD, proc.as_str(), CWD, target, AtFlags::SYMLINK_FOLLOW)?;
                Ok(())
            }
            NewFile::Named(t) => t.persist_noclobber(target).map(drop).map_err(|e| e.error),
        }
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}
