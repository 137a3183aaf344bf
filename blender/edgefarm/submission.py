# One submit, from the pack to the job, without `bpy`: the add-on runs it in a worker thread
# (in the UI) or inline (in background Blender), and reads its state from the main thread.

import json
import os
import subprocess
import threading
import traceback

from .farm import Canceled, Farm, FarmError

PACK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pack.py")


class Submission:
    """`settings` is a plain dict gathered on the main thread:
    url, token, blender (binary), source (the .blend to pack: the artist's file, or a saved copy
    of the session), original (the artist's file), root ("" = automatic), cache (dir), upload,
    allow_missing, spec (the job without params.file/inputs), shared_file (params.file when not
    uploading)."""

    def __init__(self, settings):
        self.s = settings
        self.lock = threading.Lock()
        self.stage = "starting"
        self.message = "Starting"
        self.progress = 0.0
        self.canceled = False
        self.result = None
        self.missing = []
        self.proc = None
        self.thread = None

    # --- state, read from the main thread ------------------------------------------------------
    def _set(self, stage=None, message=None, progress=None):
        with self.lock:
            if stage is not None:
                self.stage = stage
            if message is not None:
                self.message = message
            if progress is not None:
                self.progress = progress

    def snapshot(self):
        with self.lock:
            return self.stage, self.message, self.progress

    @property
    def finished(self):
        return self.stage in ("done", "missing", "error", "canceled")

    def cancel(self):
        self.canceled = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def start(self):
        self.thread = threading.Thread(target=self.run, name="edgefarm-submit", daemon=True)
        self.thread.start()

    # --- the work --------------------------------------------------------------------------------
    def run(self):
        try:
            self._run()
        except Canceled:
            self._set("canceled", "Canceled: nothing was submitted.", 0.0)
        except FarmError as e:
            self._set("error", str(e), 0.0)
        except Exception as e:  # a bug of ours: the console gets the traceback, the panel one line
            traceback.print_exc()
            self._set("error", "Unexpected error: %s: %s" % (type(e).__name__, e), 0.0)

    def _check_cancel(self):
        if self.canceled:
            raise Canceled()

    def _run(self):
        s = self.s
        farm = Farm(s["url"], s["token"])
        spec = json.loads(json.dumps(s["spec"]))
        result = {"uploaded_files": 0, "uploaded_bytes": 0, "skipped_files": 0, "skipped_bytes": 0}
        if s["upload"]:
            pack = self._pack()
            self._check_cancel()
            self.missing = pack.get("missing", [])
            result.update({"cache": pack.get("cache", {}), "warnings": pack.get("warnings", []),
                           "missing": self.missing, "root": pack.get("root"), "files": len(pack["files"])})
            if self.missing and not s["allow_missing"]:
                names = ", ".join("%s %r (%s)" % (m["kind"], m["name"], m["path"]) for m in self.missing)
                self.result = result
                self._set("missing", "Missing files, nothing submitted: %s" % names, 0.0)
                return
            self._set("uploading", "Asking which files the farm lacks", 0.0)
            lacking = farm.missing(pack["files"])
            todo = []
            seen = set()
            for f in pack["files"]:
                if f["sha256"] in lacking and f["sha256"] not in seen:
                    seen.add(f["sha256"])
                    todo.append(f)
                else:
                    result["skipped_files"] += 1
                    result["skipped_bytes"] += f["size"]
            total = sum(f["size"] for f in todo) or 1
            sent = [0]

            def progress(n):
                sent[0] += n
                self._set(progress=min(1.0, sent[0] / total),
                          message="Uploading %.1f / %.1f MiB" % (sent[0] / 1048576, total / 1048576))

            for f in todo:
                self._check_cancel()
                farm.put_blob(f["local"], f["sha256"], f["size"], progress, lambda: self.canceled)
                result["uploaded_files"] += 1
                result["uploaded_bytes"] += f["size"]
            spec.setdefault("params", {})["file"] = pack["file"]
            spec["inputs"] = [{"path": f["path"], "sha256": f["sha256"], "size": f["size"]} for f in pack["files"]]
        else:
            spec.setdefault("params", {})["file"] = s["shared_file"]
        self._check_cancel()
        self._set("submitting", "Submitting the job", 1.0)
        job, retry = farm.submit(spec)
        result.update({"job": job.get("id"), "name": job.get("name"), "retry_after": retry,
                       "link": farm.dashboard_link(job.get("id", ""))})
        video_note = ""
        if s.get("video"):
            # The encode waits for the render; with uploaded files its frames are the render's
            # outputs (the encoding node downloads them) and the video is its output.
            video = json.loads(json.dumps(s["video"]))
            video["after_jobs"] = [job.get("id")]
            if s["upload"]:
                video["params"]["from_job"] = job.get("id")
            encode, _retry = farm.submit(video)
            result["video_job"] = encode.get("id")
            video_note = " Preview video: job %s." % encode.get("id")
        self.result = result
        self.job = job
        self._set("done", "Submitted job %s: uploaded %d files (%.1f MiB), %d already on the farm.%s" % (
            job.get("id"), result["uploaded_files"], result["uploaded_bytes"] / 1048576, result["skipped_files"],
            video_note), 1.0)

    def _pack(self):
        s = self.s
        args = [s["blender"], "-b", "--factory-startup", s["source"], "--python", PACK_SCRIPT, "--",
                "--as", s["original"], "--cache", s["cache"]]
        if s["root"]:
            args += ["--root", s["root"]]
        self._set("packing", "Finding the files the scene needs", 0.0)
        self._check_cancel()
        env = dict(os.environ)
        env.pop("BLENDER_USER_SCRIPTS", None)  # the child needs no add-ons (--factory-startup)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, text=True, encoding="utf-8",
                                     errors="replace")
        tail = []
        pack = None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("EDGEFARM_PROGRESS "):
                try:
                    p = json.loads(line.split(" ", 1)[1])
                    frac = p["bytes"] / p["of_bytes"] if p["of_bytes"] else 1.0
                    self._set("hashing", "Hashing %d / %d files" % (p["files"], p["of_files"]), frac)
                except (ValueError, KeyError):
                    pass
            elif line.startswith("EDGEFARM_PACK "):
                try:
                    pack = json.loads(line.split(" ", 1)[1])
                except ValueError:
                    pack = {"error": "unreadable answer from the pack script"}
            else:
                tail = (tail + [line])[-12:]
        self.proc.wait()
        if s["source"] != s["original"]:  # the saved copy of an unsaved session
            try:
                os.remove(s["source"])
            except OSError:
                pass
        self._check_cancel()
        if pack is None:
            raise FarmError("Packing failed (Blender exited %s): %s" % (self.proc.returncode, " / ".join(tail[-4:])))
        if "error" in pack:
            raise FarmError("Packing failed: %s" % pack["error"])
        return pack
