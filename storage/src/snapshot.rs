//! Snapshot files: a shard's state, streamed to and from disk.
//!
//! A snapshot is the shard's whole `state` range, so it grows with every
//! payment the shard keeps. It is therefore never held in memory nor written
//! into RocksDB: building one streams a consistent iterator into a file,
//! sending one reads the file in chunks, receiving one writes the chunks to
//! a file, and installing one streams the file into the state in bounded
//! batches.
//!
//! File format: a format version byte, then each key (without its shard
//! prefix) and value as a length-prefixed chunk (`u32` big-endian length).
//!
//! Files live in `<database>/snapshots/`, named by shard and a random id.
//! `raft_meta` records which file is a shard's current snapshot
//! ([`SnapshotRecord`]); any other file there is left over from a crash or
//! an abandoned transfer and is deleted when the store opens.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use actors::model::ShardId;
use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use uuid::Uuid;

use crate::{Error, Result};

/// Format version written first in snapshot data, so a later version can
/// change the format and still install old snapshots.
const FORMAT_VERSION: u8 = 1;

/// Chunks are buffered this much on their way to and from the disk.
const BUFFER_BYTES: usize = 1 << 20;

/// A shard's current snapshot, or the one it is installing: what it covers
/// and the file (in the snapshot directory) that holds its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub(crate) meta: SnapshotMeta<u64, BasicNode>,
    pub(crate) file: String,
}

/// A snapshot's data as openraft reads (to send) or writes (to receive) it:
/// an open file in the snapshot directory.
///
/// A file opened to receive a snapshot is deleted when dropped, unless
/// installing it made it the shard's current snapshot; so an abandoned
/// transfer leaves nothing behind.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    name: String,
    path: PathBuf,
    remove_on_drop: bool,
}

impl SnapshotFile {
    /// Opens an existing snapshot file for reading.
    pub(crate) fn open(directory: &Path, name: &str) -> Result<SnapshotFile> {
        let path = directory.join(name);
        let file = File::open(&path).map_err(|e| io_error(&path, "open", &e))?;
        Ok(SnapshotFile { file: file.into(), name: name.to_owned(), path, remove_on_drop: false })
    }

    /// Creates a new, empty file to receive a snapshot into.
    pub(crate) fn receive(directory: &Path, shard: ShardId) -> Result<SnapshotFile> {
        let name = new_name(shard);
        let path = directory.join(&name);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error(&path, "create", &e))?;
        Ok(SnapshotFile { file: file.into(), name, path, remove_on_drop: true })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether this file was received into `directory` and is not yet
    /// anyone's snapshot, so that installing it may take it over.
    pub(crate) fn is_received_into(&self, directory: &Path) -> bool {
        self.remove_on_drop && self.path.parent() == Some(directory)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file survive this handle: it has become a shard's snapshot.
    pub(crate) fn keep(&mut self) {
        self.remove_on_drop = false;
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "cannot delete an unused snapshot file");
            }
        }
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.get_mut().file).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.get_mut().file).poll_complete(cx)
    }
}

/// A fresh file name for a snapshot of `shard`.
pub(crate) fn new_name(shard: ShardId) -> String {
    format!("{}-{}.snap", shard.0, Uuid::new_v4().simple())
}

/// Writes a snapshot file: the format version, then each pair as two chunks.
pub(crate) struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
}

impl Writer {
    pub(crate) fn create(directory: &Path, name: &str) -> Result<Writer> {
        let path = directory.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error(&path, "create", &e))?;
        let mut writer = Writer { out: BufWriter::with_capacity(BUFFER_BYTES, file), path };
        writer.write(&[FORMAT_VERSION])?;
        Ok(writer)
    }

    pub(crate) fn pair(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        for bytes in [key, value] {
            let length = u32::try_from(bytes.len()).expect("RocksDB keys and values are below 4 GiB");
            self.write(&length.to_be_bytes())?;
            self.write(bytes)?;
        }
        Ok(())
    }

    /// Flushes the file and syncs it and its directory entry to disk.
    pub(crate) fn finish(self) -> Result<()> {
        let path = self.path.clone();
        let file = self.out.into_inner().map_err(|e| io_error(&path, "write", e.error()))?;
        file.sync_all().map_err(|e| io_error(&path, "sync", &e))?;
        sync_directory(&path)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| io_error(&self.path, "write", &e))
    }
}

/// Reads a snapshot file back, pair by pair.
pub(crate) struct Reader {
    input: BufReader<File>,
    path: PathBuf,
}

impl Reader {
    /// Opens a snapshot file and checks its format version.
    pub(crate) fn open(directory: &Path, name: &str) -> Result<Reader> {
        let path = directory.join(name);
        let file = File::open(&path).map_err(|e| io_error(&path, "open", &e))?;
        let mut reader = Reader { input: BufReader::with_capacity(BUFFER_BYTES, file), path };
        let mut version = [0; 1];
        match reader.input.read_exact(&mut version) {
            Ok(()) if version[0] == FORMAT_VERSION => Ok(reader),
            Ok(()) => Err(Error::Decode(format!(
                "snapshot {} has format version {}; this version reads {FORMAT_VERSION}",
                reader.path.display(),
                version[0]
            ))),
            Err(error) => Err(io_error(&reader.path, "read", &error)),
        }
    }

    /// The next key and value into `key` and `value`; false at the end.
    pub(crate) fn next_pair(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool> {
        let mut length = [0; 4];
        match self.input.read(&mut length[..1]) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(error) => return Err(io_error(&self.path, "read", &error)),
        }
        self.input.read_exact(&mut length[1..]).map_err(|e| self.truncated(&e))?;
        self.chunk(u32::from_be_bytes(length), key)?;
        self.input.read_exact(&mut length).map_err(|e| self.truncated(&e))?;
        self.chunk(u32::from_be_bytes(length), value)?;
        Ok(true)
    }

    fn chunk(&mut self, length: u32, into: &mut Vec<u8>) -> Result<()> {
        into.resize(length as usize, 0);
        self.input.read_exact(into).map_err(|e| self.truncated(&e))
    }

    fn truncated(&self, error: &std::io::Error) -> Error {
        Error::Corrupt(format!("snapshot {} ends inside a chunk ({error})", self.path.display()))
    }
}

/// Reads a snapshot file through to its end (a whole file of whole chunks
/// in a known format) and syncs it and its directory entry to disk.
pub(crate) fn check(directory: &Path, name: &str) -> Result<()> {
    let mut reader = Reader::open(directory, name)?;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    while reader.next_pair(&mut key, &mut value)? {}
    let path = directory.join(name);
    File::open(&path).and_then(|file| file.sync_all()).map_err(|e| io_error(&path, "sync", &e))?;
    sync_directory(&path)
}

/// Makes a file's creation or removal in its directory durable.
pub(crate) fn sync_directory(path: &Path) -> Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    File::open(directory).and_then(|d| d.sync_all()).map_err(|e| io_error(directory, "sync", &e))
}

/// Copies a snapshot file into `directory` under a new name (to install a
/// file that is some shard's snapshot already); not synced ([`check`] is).
pub(crate) fn copy(from: &Path, directory: &Path, shard: ShardId) -> Result<String> {
    let copy = new_name(shard);
    std::fs::copy(from, directory.join(&copy)).map_err(|e| io_error(from, "copy", &e))?;
    Ok(copy)
}

/// Deletes a snapshot file that no record names any more.
pub(crate) fn remove(directory: &Path, name: &str) {
    let path = directory.join(name);
    if let Err(error) = std::fs::remove_file(&path) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "cannot delete an old snapshot file");
        }
    }
}

pub(crate) fn io_error(path: &Path, action: &str, error: &std::io::Error) -> Error {
    Error::Io(format!("cannot {action} {}: {error}", path.display()))
}
