# edgefarm pack: finds every file a .blend needs, writes a copy of it for the farm whose paths
# all point inside the pack, and hashes the files (with a cache). ONE file shared by the Blender
# add-on (which runs it in a background Blender) and the CLI (`edgefarm submit blender --upload`,
# which embeds it and runs `blender -b FILE --factory-startup --python pack.py -- ARGS`).
#
# Run inside Blender:  blender -b shot.blend --factory-startup --python pack.py -- \
#                          --root PROJECT [--as ORIGINAL.blend] [--cache DIR]
# It prints `EDGEFARM_PROGRESS {json}` lines while hashing and, last, `EDGEFARM_PACK {json}`:
#   {"file": pack path of the copy, "root": ..., "files": [{"path", "sha256", "size", "local"}],
#    "missing": [{"kind", "name", "path"}], "warnings": [...], "cache": {counters}}
# The artist's .blend is only read: the copy is written under the cache directory.
#
# Standard library only (Blender's bundled Python); `bpy` is imported only where needed, so the
# add-on can import the hashing half in Blender's UI process too.

import hashlib
import json
import os
import re
import sys
import time

VERSION = 1
OUTSIDE = "_outside"
BUF = 1 << 20


def default_cache_dir():
    """Where the hash cache and the farm copies live (EDGEFARM_PACK_CACHE overrides)."""
    env = os.environ.get("EDGEFARM_PACK_CACHE")
    if env:
        return env
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "edgefarm", "pack")


class Canceled(Exception):
    """The submitter asked to stop."""


class HashCache:
    """(absolute path, size, mtime) -> sha256, kept as JSON in the cache directory.

    Counters say what a run did: `hashed_files`/`hashed_bytes` were read, `cached_files` were
    answered from the cache without opening the file."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "hashes.json")
        self.entries = {}
        self.hashed_files = 0
        self.hashed_bytes = 0
        self.cached_files = 0
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                data = json.load(f)
            if data.get("version") == 1 and isinstance(data.get("files"), dict):
                self.entries = data["files"]
        except (OSError, ValueError):
            pass

    def sha256(self, path, progress=None, cancel=None, ours=False):
        """(sha256, size) of the file at `path`, read only when the cache cannot answer. `ours`:
        a file this script wrote and never changes (a farm copy), remembered however new."""
        key = os.path.abspath(path)
        st = os.stat(key)
        hit = self.entries.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            self.cached_files += 1
            return hit[2], st.st_size
        h = hashlib.sha256()
        size = 0
        with open(key, "rb") as f:
            while True:
                if cancel is not None and cancel():
                    raise Canceled()
                chunk = f.read(BUF)
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        digest = h.hexdigest()
        self.hashed_files += 1
        self.hashed_bytes += size
        after = os.stat(key)
        # A file written within the file system's timestamp tick of now could change again
        # without its size or mtime changing: such a hash is used but not remembered. The tick
        # is guessed from the mtime: whole seconds (FAT, HFS+, some network shares) or finer.
        tick = 2.0 if st.st_mtime_ns % 1000000000 == 0 else 0.1
        fresh = time.time() - after.st_mtime < tick
        if after.st_size == size and after.st_mtime_ns == st.st_mtime_ns and (ours or not fresh):
            self.entries[key] = [size, st.st_mtime_ns, digest]
        return digest, size

    def counters(self):
        return {
            "hashed_files": self.hashed_files,
            "hashed_bytes": self.hashed_bytes,
            "cached_files": self.cached_files,
        }

    def save(self):
        # Entries of files that are gone are dropped, so the cache does not grow for ever.
        live = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "files": live}, f)
        os.replace(tmp, self.path)


def is_under(path, root):
    try:
        return os.path.commonpath([os.path.normcase(path), os.path.normcase(root)]) == os.path.normcase(root)
    except ValueError:  # other drive
        return False


def pack_path(path, root):
    """Where the local file `path` goes in the pack: relative to `root` when under it, else
    under `_outside/<drive-or-root>/...`. Always `/`-separated."""
    path = os.path.normpath(os.path.abspath(path))
    if is_under(path, root):
        rel = os.path.relpath(path, root)
        return "/".join(rel.split(os.sep))
    drive, rest = os.path.splitdrive(path)
    if drive.startswith("\\\\") or drive.startswith("//"):
        head = ["unc"] + [p for p in re.split(r"[\\/]+", drive) if p]
    elif drive:
        head = [drive.rstrip(":")]
    else:
        head = ["root"]
    parts = [p for p in re.split(r"[\\/]+", rest) if p]
    return "/".join([OUTSIDE] + head + parts)


def relative_to(target, base_dir):
    """`//`-relative path from the pack folder `base_dir` to the pack path `target`."""
    t = target.split("/")
    b = [p for p in base_dir.split("/") if p]
    i = 0
    while i < len(b) and i < len(t) - 1 and b[i] == t[i]:
        i += 1
    return "//" + "/".join([".."] * (len(b) - i) + t[i:])


def bad_pack_path(p):
    """Why the farm would refuse `p` as a manifest path (docs/ASSETS.md), or None."""
    if len(p.encode("utf-8")) > 1024:
        return "is longer than 1024 bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in p):
        return "contains a control character"
    if "\\" in p or ":" in p:
        return "contains `\\` or `:`"
    if p.startswith("-"):
        return "starts with `-`"
    if any(part in ("", ".", "..") for part in p.split("/")):
        return "has an empty, `.` or `..` part"
    return None


def project_root(blend, relative_files, explicit=None):
    """The project folder: `explicit` when given, else the deepest folder holding the .blend and
    every file it reaches by a `//`-relative path."""
    if explicit:
        return os.path.normpath(os.path.abspath(explicit))
    folders = [os.path.dirname(os.path.abspath(blend))]
    folders += [os.path.dirname(os.path.abspath(f)) for f in relative_files]
    try:
        return os.path.normpath(os.path.commonpath(folders))
    except ValueError:  # different drives: the .blend's own folder
        return folders[0]


# --- Blender side (runs in a background Blender on the file) --------------------------------


def _udim_or_sequence(path, image):
    """Every file of a tiled (UDIM) or sequence image, else just `path`."""
    folder, name = os.path.split(path)
    pattern = None
    if "<UDIM>" in name or "<UVTILE>" in name:
        esc = re.escape(name).replace(re.escape("<UDIM>"), r"\d{4}").replace(re.escape("<UVTILE>"), r"u\d+_v\d+")
        pattern = re.compile("^" + esc + "$")
    elif image is not None and getattr(image, "source", "") in ("SEQUENCE", "TILED"):
        m = re.match(r"^(.*?)(\d+)(\D*)$", name)
        if m:
            pattern = re.compile("^" + re.escape(m.group(1)) + r"\d+" + re.escape(m.group(3)) + "$")
    if pattern is None:
        return [path]
    try:
        found = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if pattern.match(n)]
    except OSError:
        found = []
    return found or [path]


def _files_in(folder):
    out = []
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            out.append(os.path.join(dirpath, n))
    return out


class Refs:
    """What the scene points at: `users` maps a local file to the datablocks that need it."""

    def __init__(self):
        self.users = {}  # abs path -> [(kind, name)]
        self.missing = []  # {"kind", "name", "path"}
        self.relative = []  # abs paths reached by a `//` path (to find the project root)
        self.rewrites = []  # (setter, abs path or folder, is_folder)
        self.linked = []  # (library, raw path, datablock name) of datablocks a library holds

    def add(self, kind, name, raw, abspath, setter=None, folder=False, files=None):
        if not abspath:
            return
        abspath = os.path.normpath(abspath)
        if raw.startswith("//"):
            self.relative.append(abspath)
        if files is not None:  # tiles, sequences, strip images: each file on its own
            listed = files
            present = any(os.path.isfile(f) for f in files)
        else:
            present = os.path.isdir(abspath) if folder else os.path.isfile(abspath)
            listed = _files_in(abspath) if folder else [abspath]
        if not present or not listed:
            self.missing.append({"kind": kind, "name": name, "path": abspath})
        for f in listed:
            if os.path.isfile(f):
                self.users.setdefault(os.path.normpath(f), []).append((kind, name))
        if setter is not None:
            self.rewrites.append((setter, abspath, folder))


def collect(bpy, original):
    """Every external file the open .blend needs (linked libraries recursively: their datablocks
    are loaded too, and each path is resolved against the library that holds it). `original`:
    the artist's file, when what is open is a saved copy of the session."""
    refs = Refs()

    def resolve(raw, lib):
        return os.path.normpath(bpy.path.abspath(raw, library=lib))

    def setter_of(idb, attr):
        if idb.library is not None:
            # A library's own paths are kept (the library is sent as it is): they must still
            # resolve from the library's place in the pack, which run() checks.
            refs.linked.append((idb.library, getattr(idb, attr if attr != "filepath_raw" else "filepath"), idb.name))
            return None
        return lambda value: setattr(idb, attr, value)

    for lib in bpy.data.libraries:
        parent = getattr(lib, "parent", None)
        refs.add("library", lib.name, lib.filepath, resolve(lib.filepath, parent),
                 None if parent is not None else (lambda v, lib=lib: setattr(lib, "filepath", v)))
    for img in bpy.data.images:
        if img.packed_file is not None or img.source not in ("FILE", "SEQUENCE", "MOVIE", "TILED"):
            continue
        if not img.filepath:
            continue
        p = resolve(img.filepath, img.library)
        files = _udim_or_sequence(p, img)
        refs.add("image", img.name, img.filepath, p, setter_of(img, "filepath_raw"), files=files)
    for kind, coll, attr in (("sound", "sounds", "filepath"), ("movie clip", "movieclips", "filepath"),
                             ("font", "fonts", "filepath"), ("cache file", "cache_files", "filepath"),
                             ("volume", "volumes", "filepath"), ("text", "texts", "filepath")):
        for idb in getattr(bpy.data, coll, []):
            raw = getattr(idb, attr, "")
            if not raw or raw == "<builtin>" or getattr(idb, "packed_file", None) is not None:
                continue
            p = resolve(raw, idb.library)
            if kind == "text" and not os.path.isfile(p):
                continue  # a text's lines are stored in the .blend; its file is optional
            files = None
            if kind == "volume" and getattr(idb, "is_sequence", False):
                files = _udim_or_sequence(p, None)
            refs.add(kind, idb.name, raw, p, setter_of(idb, attr), files=files)
    for scene in bpy.data.scenes:
        if scene.library is not None or scene.sequence_editor is None:
            continue
        ed = scene.sequence_editor
        strips = getattr(ed, "sequences_all", None) or getattr(ed, "strips_all", [])
        for s in strips:
            if s.type == "MOVIE" and s.filepath:
                refs.add("movie strip", s.name, s.filepath, resolve(s.filepath, None),
                         lambda v, s=s: setattr(s, "filepath", v))
            elif s.type == "IMAGE" and s.directory:
                d = resolve(s.directory, None)
                files = [os.path.join(d, e.filename) for e in s.elements]
                refs.add("image strip", s.name, s.directory, d,
                         lambda v, s=s: setattr(s, "directory", v), folder=True, files=files)
    for ob in bpy.data.objects:
        if ob.library is not None:
            continue
        for mod in ob.modifiers:
            dom = getattr(mod, "domain_settings", None)
            if mod.type == "FLUID" and dom is not None and dom.cache_directory:
                d = resolve(dom.cache_directory, None)
                if os.path.isdir(d):
                    refs.add("fluid cache", ob.name, dom.cache_directory, d,
                             lambda v, dom=dom: setattr(dom, "cache_directory", v), folder=True)
    # Point caches on disk live in //blendcache_<file>/ beside the .blend.
    blend = original
    stem = os.path.splitext(os.path.basename(blend))[0]
    bc = os.path.join(os.path.dirname(blend), "blendcache_" + stem)
    if os.path.isdir(bc):
        refs.add("point cache", stem, "//blendcache_" + stem, bc, None, folder=True)
    # Anything Blender lists that the above did not cover is still sent (kept at its place).
    known = set(refs.users) | {m["path"] for m in refs.missing}
    try:
        listed = bpy.utils.blend_paths(absolute=True, packed=False, local=False)
    except TypeError:
        listed = bpy.utils.blend_paths(absolute=True)
    for p in listed:
        p = os.path.normpath(p)
        if p not in known and os.path.isfile(p):
            refs.users.setdefault(p, []).append(("file", os.path.basename(p)))
    return refs


def write_copy(bpy, refs, root, blend_pack, dest):
    """Points every path of the open file at its place in the pack (relative to the copy's own
    place, `blend_pack`) and saves the result to `dest`. The open file itself is not saved."""
    base = blend_pack.rsplit("/", 1)[0] if "/" in blend_pack else ""
    warnings = []
    for setter, abspath, folder in refs.rewrites:
        target = relative_to(pack_path(abspath, root), base)
        if folder:
            target += "/"
        try:
            setter(target)
        except (AttributeError, TypeError, ValueError, RuntimeError) as e:
            warnings.append("cannot rewrite the path %s: %s" % (abspath, e))
    tmp = dest + ".%d.tmp.blend" % os.getpid()
    bpy.ops.wm.save_as_mainfile(filepath=tmp, check_existing=False, copy=True, relative_remap=False,
                                compress=False)
    os.replace(tmp, dest)
    return warnings


def emit(tag, obj):
    sys.stdout.write("%s %s\n" % (tag, json.dumps(obj)))
    sys.stdout.flush()


def parse_args(argv):
    args = argv[argv.index("--") + 1:] if "--" in argv else []
    out = {"root": None, "as": None, "cache": None}
    i = 0
    while i < len(args):
        key = args[i].lstrip("-")
        if key in out and i + 1 < len(args):
            out[key] = args[i + 1]
            i += 2
        else:
            raise SystemExit("edgefarm pack: unknown argument %r" % args[i])
    return out


def prune_copies(folder, keep=32):
    try:
        names = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".blend")]
    except OSError:
        return
    names.sort(key=lambda p: os.stat(p).st_mtime, reverse=True)
    for p in names[keep:]:
        try:
            os.remove(p)
        except OSError:
            pass


def run(bpy, root=None, original=None, cache_dir=None):
    """The whole pack of the open file; returns the result dict (see the top of this file)."""
    cache_dir = cache_dir or default_cache_dir()
    current = os.path.normpath(os.path.abspath(bpy.data.filepath))
    original = os.path.normpath(os.path.abspath(original)) if original else current
    refs = collect(bpy, original)
    root = project_root(original, refs.relative, root)
    blend_pack = pack_path(original, root)
    cache = HashCache(cache_dir)
    files = {}
    warnings = []

    total = sum(os.path.getsize(p) for p in refs.users)
    done = [0, 0]

    def progress(n):
        done[0] += n

    for i, local in enumerate(sorted(refs.users)):
        pp = pack_path(local, root)
        why = bad_pack_path(pp)
        if why:
            warnings.append("cannot send %s: its place in the pack %r %s" % (local, pp, why))
            continue
        sha, size = cache.sha256(local, progress)
        files[pp] = {"path": pp, "sha256": sha, "size": size, "local": local}
        done[1] = i + 1
        emit("EDGEFARM_PROGRESS", {"files": done[1], "of_files": len(refs.users), "bytes": done[0],
                                   "of_bytes": total})
    # The copy: keyed by what goes into it, so an unchanged project gives the same bytes again.
    source_sha, _ = cache.sha256(current)
    mapping = sorted((pack_path(a, root), bool(f)) for _s, a, f in refs.rewrites)
    key = hashlib.sha256(json.dumps([VERSION, source_sha, blend_pack, mapping]).encode()).hexdigest()
    copies = os.path.join(cache_dir, "copies")
    os.makedirs(copies, exist_ok=True)
    dest = os.path.join(copies, key[:32] + ".blend")
    if not os.path.isfile(dest):
        warnings += write_copy(bpy, refs, root, blend_pack, dest)
        prune_copies(copies)
    sha, size = cache.sha256(dest, ours=True)
    files[blend_pack] = {"path": blend_pack, "sha256": sha, "size": size, "local": dest}
    cache.save()
    # Files only a library needs keep their place relative to it: say when that breaks (an
    # absolute path inside a library, or a relative one that leaves the library's side).
    for lib, raw, name in refs.linked:
        lib_file = bpy.path.abspath(lib.filepath, library=getattr(lib, "parent", None))
        lib_pack = pack_path(lib_file, root)
        want = pack_path(bpy.path.abspath(raw, library=lib), root)
        base = lib_pack.rsplit("/", 1)[0] if "/" in lib_pack else ""
        if not raw.startswith("//") or os.path.normpath(os.path.join(base, raw[2:])).replace(os.sep, "/") != want:
            warnings.append("%s (in library %s) points at %s, which the farm cannot find from the library's place;"
                            " make the path relative inside the library" % (name, lib.name, raw))
    return {
        "version": VERSION,
        "root": root,
        "file": blend_pack,
        "files": [files[k] for k in sorted(files)],
        "missing": refs.missing,
        "warnings": warnings,
        "cache": cache.counters(),
    }


def main():
    import bpy

    args = parse_args(sys.argv)
    if not bpy.data.filepath:
        emit("EDGEFARM_PACK", {"error": "Blender opened no .blend file"})
        return
    try:
        result = run(bpy, args["root"], args["as"], args["cache"])
    except Exception as e:  # reported to the caller as one line, not a traceback
        result = {"error": "%s: %s" % (type(e).__name__, e)}
    emit("EDGEFARM_PACK", result)


if __name__ == "__main__":
    main()
