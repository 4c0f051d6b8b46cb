"""A Beam FileSystem over `tf.io.gfile` for the schemes that only TensorFlow knows (`ram://`).

Beam ships its own filesystems for local paths, gs://, s3://, hdfs://...; a scheme that only
`tf.io.gfile` serves (`ram://`, the in-memory store the tests use as a stand-in for a bucket, or
a TensorFlow filesystem plugin) would make Beam I/O fail with "Unable to get filesystem". Beam
finds FileSystem subclasses when they are imported: the Beam jobs import this module.
"""
import os

import tensorflow as tf
from apache_beam.io import filesystem
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata


class GFileSystem(filesystem.FileSystem):
    """`ram://` paths through tf.io.gfile (one process's memory: in-process runners only)."""

    @classmethod
    def scheme(cls):
        return "ram"

    def join(self, basepath, *paths):
        return os.path.join(basepath, *paths)

    def split(self, path):
        return os.path.dirname(path), os.path.basename(path)

    def mkdirs(self, path):
        tf.io.gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        root = dir_or_prefix if tf.io.gfile.isdir(dir_or_prefix) else os.path.dirname(dir_or_prefix)
        if not tf.io.gfile.isdir(root):
            return
        try:
            for directory, _, files in tf.io.gfile.walk(root):
                for name in files:
                    path = os.path.join(directory, name)
                    if path.startswith(dir_or_prefix):
                        stat = tf.io.gfile.stat(path)
                        yield FileMetadata(path, stat.length, stat.mtime_nsec / 1e9)
        except tf.errors.OpError as e:
            raise BeamIOError("List operation failed", {dir_or_prefix: e}) from e

    def _open(self, path, mode, compression_type):
        compression_type = filesystem.FileSystem._get_compression_type(path, compression_type)
        raw = tf.io.gfile.GFile(path, mode)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)

    def create(self, path, mime_type="application/octet-stream",
               compression_type=CompressionTypes.AUTO):
        tf.io.gfile.makedirs(os.path.dirname(path))
        opened = self._open(path, "wb", compression_type)
        if isinstance(opened, tf.io.gfile.GFile):
            opened.write(b"")  # GFile creates the file at its first write; Beam expects it now
        return opened

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def _each(self, operation, *lists):
        failures = {}
        for names in zip(*lists):
            try:
                operation(*names)
            except (tf.errors.OpError, OSError) as e:
                failures[names] = e
        if failures:
            raise BeamIOError(f"{operation.__name__} failed", failures)

    def copy(self, source_file_names, destination_file_names):
        def copy(source, destination):
            tf.io.gfile.makedirs(os.path.dirname(destination))
            tf.io.gfile.copy(source, destination, overwrite=True)
        self._each(copy, source_file_names, destination_file_names)

    def rename(self, source_file_names, destination_file_names):
        def rename(source, destination):
            tf.io.gfile.makedirs(os.path.dirname(destination))
            tf.io.gfile.rename(source, destination, overwrite=True)
        self._each(rename, source_file_names, destination_file_names)

    def exists(self, path):
        return tf.io.gfile.exists(path)

    def size(self, path):
        return tf.io.gfile.stat(path).length

    def last_updated(self, path):
        return tf.io.gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        stat = tf.io.gfile.stat(path)
        return FileMetadata(path, stat.length, stat.mtime_nsec / 1e9)

    def delete(self, paths):
        def delete(path):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
        self._each(delete, paths)
