# edgefarm: submit the open scene to an edgefarm render farm from Blender (docs/BLENDER.md).
# Preferences hold the farm URL and token; the Render Properties panel holds the job settings
# (stored on the scene); `bpy.ops.edgefarm.submit()` packs, uploads what the farm lacks and
# submits, off the main thread, then follows the job with a bpy.app.timers poll.

import json
import os
import re
import threading

import bpy
from bpy.app.handlers import persistent

from . import farm as farm_api
from . import pack
from .submission import Submission

bl_info = {
    "name": "edgefarm",
    "author": "edgefarm",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Render > edgefarm",
    "description": "Submit the scene to an edgefarm render farm (packs and uploads its files)",
    "category": "Render",
}

# Running submissions and polls, by scene name (never stored in bpy data).
_submissions = {}
_polls = {}


def prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def farm_settings(context):
    """URL and token: the preferences, else EDGEFARM_URL / EDGEFARM_TOKEN / EDGEFARM_SECRET."""
    p = prefs(context)
    url = (p.url if p else "") or os.environ.get("EDGEFARM_URL", "")
    token = (p.token if p else "") or os.environ.get("EDGEFARM_TOKEN") or os.environ.get("EDGEFARM_SECRET", "")
    return url, token


def _redraw():
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("PROPERTIES", "PREFERENCES"):
                area.tag_redraw()


# --- preferences ----------------------------------------------------------------------------------

_connection = {"thread": None, "message": ""}


class EDGEFARM_OT_test_connection(bpy.types.Operator):
    """Check that the farm answers, is an edgefarm new enough for uploads, and accepts the token"""

    bl_idname = "edgefarm.test_connection"
    bl_label = "Test connection"

    def execute(self, context):
        url, token = farm_settings(context)
        p = prefs(context)

        def check():
            try:
                msg = farm_api.Farm(url, token, timeout=15).check()
                ok = True
            except farm_api.FarmError as e:
                msg, ok = str(e), False
            _connection["message"] = msg
            _connection["ok"] = ok

        if bpy.app.background:
            check()
            if p:
                p.connection_status = _connection["message"]
            self.report({"INFO"} if _connection["ok"] else {"ERROR"}, _connection["message"])
            return {"FINISHED"} if _connection["ok"] else {"CANCELLED"}
        if _connection["thread"] is not None and _connection["thread"].is_alive():
            return {"CANCELLED"}
        if p:
            p.connection_status = "Testing %s ..." % url
        _connection["thread"] = threading.Thread(target=check, daemon=True)
        _connection["thread"].start()

        def follow():
            if _connection["thread"].is_alive():
                return 0.2
            p2 = prefs()
            if p2:
                p2.connection_status = _connection["message"]
            _redraw()
            return None

        bpy.app.timers.register(follow, first_interval=0.2)
        return {"FINISHED"}


class EdgefarmPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    url: bpy.props.StringProperty(name="Farm URL", description="The farm's address, e.g. https://farm.example:8443",
                                  default="")
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD", default="",
                                    description="Your personal token (edgefarm tokens create --role submitter) "
                                    "or the farm secret")
    connection_status: bpy.props.StringProperty(name="Connection", default="")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "url")
        col.prop(self, "token")
        row = col.row()
        row.operator("edgefarm.test_connection", icon="URL")
        if self.connection_status:
            for line in _wrap(self.connection_status, 90):
                col.label(text=line)


# --- settings on the scene ------------------------------------------------------------------------


class EdgefarmSceneSettings(bpy.types.PropertyGroup):
    job_name: bpy.props.StringProperty(name="Job name", description="Empty: the file's and the scene's name")
    use_scene_range: bpy.props.BoolProperty(name="Scene frame range", default=True,
                                            description="Render the scene's start, end and step")
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    frame_step: bpy.props.IntProperty(name="Step", default=1, min=1)
    chunk_size: bpy.props.IntProperty(name="Frames per task", default=10, min=1, max=10000)
    priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)
    tags: bpy.props.StringProperty(name="Tags", description="Only nodes with every tag take it (comma-separated)")
    output: bpy.props.StringProperty(name="Output", description="Output pattern relative to the nodes' output "
                                     "root; # = frame digits. Empty: <file>/frame_####")
    upload: bpy.props.BoolProperty(name="Upload files", default=True,
                                   description="Send the .blend and every file it needs (nodes share no disk)")
    preview_video: bpy.props.BoolProperty(name="Preview video", default=False,
                                          description="Then encode the frames into an H.264 MP4 beside them, at "
                                          "the scene's frame rate (a second job, on a node with [types.ffmpeg])")
    project_root: bpy.props.StringProperty(name="Project folder", subtype="DIR_PATH",
                                           description="Files under it keep their layout on the farm. Empty: the "
                                           "folder holding the .blend and everything it reaches by a relative path")
    # What the last submit did (read by the panel, and by scripts and tests).
    job_id: bpy.props.StringProperty(name="Job")
    job_link: bpy.props.StringProperty(name="Dashboard")
    job_state: bpy.props.StringProperty(name="State")
    frames_done: bpy.props.IntProperty(name="Frames done")
    frames_total: bpy.props.IntProperty(name="Frames")
    failed_tasks: bpy.props.IntProperty(name="Failed tasks")
    status: bpy.props.StringProperty(name="Status")
    progress: bpy.props.FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0)
    busy: bpy.props.BoolProperty(name="Busy")
    missing: bpy.props.StringProperty(name="Missing files")
    last_result: bpy.props.StringProperty(name="Last result (JSON)")
    video_job: bpy.props.StringProperty(name="Preview video job")
    video_path: bpy.props.StringProperty(name="Preview video", subtype="FILE_PATH")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "render"


def job_spec(scene, blend_path):
    st = scene.edgefarm
    stem = os.path.splitext(os.path.basename(blend_path))[0]
    if st.use_scene_range:
        start, end, step = scene.frame_start, scene.frame_end, scene.frame_step
    else:
        start, end, step = st.frame_start, st.frame_end, st.frame_step
    frames = "%d-%d" % (start, end) + ("x%d" % step if step > 1 else "")
    params = {"output": st.output.strip() or "%s/frame_####" % _safe(stem), "scene": scene.name}
    spec = {"type": "blender", "name": st.job_name.strip() or "%s %s" % (stem, scene.name), "frames": frames,
            "chunk_size": st.chunk_size, "priority": st.priority, "params": params}
    tags = [t.strip() for t in st.tags.split(",") if t.strip()]
    if tags:
        spec["tags"] = tags
    return spec


# Blender's file formats an encode reads, and the extension Blender gives their files.
VIDEO_INPUTS = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "OPEN_EXR": "exr", "OPEN_EXR_MULTILAYER": "exr"}


def video_spec(scene, spec):
    """The encode job of `spec` (without the render's id, set once it is known), or an error.

    The frames are `spec`'s output pattern with the scene's file extension (Blender appends
    #### to a pattern without #), the video sits beside them (frame_#### -> frame.mp4)."""
    if "x" in spec["frames"]:  # job_spec writes a step only when it is above 1
        return None, "Preview video needs every frame: set the frame step to 1"
    ext = VIDEO_INPUTS.get(scene.render.image_settings.file_format)
    if ext is None:
        return None, "Preview video reads PNG, JPEG, TIFF or OpenEXR frames, not %s" % (
            scene.render.image_settings.file_format)
    folder, _sep, name = spec["params"]["output"].rpartition("/")
    if "#" not in name:
        name += "####"
    stem = "".join(part for part in name.split("#")).rstrip("_.- ") or "video"
    join = (lambda f: folder + "/" + f) if folder else (lambda f: f)
    fps = scene.render.fps / (scene.render.fps_base or 1.0)
    video = {"type": "ffmpeg", "name": spec["name"] + " (video)", "frames": spec["frames"],
             "priority": spec["priority"], "on_dependency_failure": "cancel",
             "params": {"input": join("%s.%s" % (name, ext)), "output": join(stem + ".mp4"), "fps": round(fps, 3)}}
    return video, None


# --- submit -----------------------------------------------------------------------------------------


class EDGEFARM_OT_submit(bpy.types.Operator):
    """Pack the scene's files, upload what the farm lacks, and submit the job"""

    bl_idname = "edgefarm.submit"
    bl_label = "Submit to edgefarm"

    allow_missing: bpy.props.BoolProperty(name="Submit with missing files", default=False,
                                          options={"SKIP_SAVE"})
    unsaved: bpy.props.EnumProperty(
        name="Unsaved changes",
        items=[("COPY", "Submit a saved copy", "Submit the scene as it is now; the file on disk stays as it is"),
               ("SAVE", "Save, then submit", "Save the file first")],
        default="COPY", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        if bpy.data.is_dirty and bpy.data.filepath:
            return context.window_manager.invoke_props_dialog(self, width=420)
        return self.execute(context)

    def draw(self, context):
        self.layout.label(text="The file has unsaved changes.")
        self.layout.prop(self, "unsaved", expand=True)

    def execute(self, context):
        scene = context.scene
        st = scene.edgefarm
        if scene.name in _submissions and not _submissions[scene.name].finished:
            self.report({"WARNING"}, "A submit of this scene is running")
            return {"CANCELLED"}
        original = bpy.data.filepath
        if not original:
            self.report({"ERROR"}, "Save the .blend first: the farm renders a file")
            return {"CANCELLED"}
        url, token = farm_settings(context)
        cache = pack.default_cache_dir()
        source = original
        if bpy.data.is_dirty:
            if self.unsaved == "SAVE":
                bpy.ops.wm.save_mainfile()
            else:
                # The session as it is now, saved elsewhere (paths remapped to stay right);
                # the artist's file on disk is not touched.
                folder = os.path.join(cache, "sessions")
                os.makedirs(folder, exist_ok=True)
                source = os.path.join(folder, "%d-%s" % (os.getpid(), os.path.basename(original)))
                bpy.ops.wm.save_as_mainfile(filepath=source, copy=True, relative_remap=True, check_existing=False)
        spec = job_spec(scene, original)
        video = None
        if st.preview_video:
            video, why = video_spec(scene, spec)
            if why:
                self.report({"ERROR"}, why)
                return {"CANCELLED"}
        root = bpy.path.abspath(st.project_root) if st.project_root else ""
        shared_root = root or os.path.dirname(original)
        settings = {
            "url": url, "token": token, "blender": bpy.app.binary_path, "source": source, "original": original,
            "root": root, "cache": cache, "upload": st.upload, "allow_missing": self.allow_missing,
            "spec": spec, "video": video,
            "shared_file": os.path.relpath(original, shared_root).replace(os.sep, "/"),
        }
        sub = Submission(settings)
        _submissions[scene.name] = sub
        st.job_id = ""
        st.job_state = ""
        st.missing = ""
        st.last_result = ""
        st.busy = True
        st.status = "Starting"
        if bpy.app.background:
            sub.run()
            _apply(scene, sub)
            stage, message, _p = sub.snapshot()
            if stage == "done":
                self.report({"INFO"}, message)
                return {"FINISHED"}
            self.report({"ERROR"}, message)
            return {"CANCELLED"}
        sub.start()
        bpy.app.timers.register(lambda: _follow_submission(scene.name), first_interval=0.1)
        return {"FINISHED"}


class EDGEFARM_OT_cancel(bpy.types.Operator):
    """Stop the running submit (nothing is submitted)"""

    bl_idname = "edgefarm.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        sub = _submissions.get(context.scene.name)
        if sub is not None:
            sub.cancel()
        return {"FINISHED"}


class EDGEFARM_OT_get_video(bpy.types.Operator):
    """Download the preview video of the last submit (checked against its hash) and open it"""

    bl_idname = "edgefarm.get_video"
    bl_label = "Get preview video"

    job: bpy.props.StringProperty(name="Video job", default="", options={"SKIP_SAVE"})
    open: bpy.props.BoolProperty(name="Open it", default=True, options={"SKIP_SAVE"})

    def execute(self, context):
        st = context.scene.edgefarm
        job_id = self.job or st.video_job
        if not job_id:
            self.report({"ERROR"}, "No preview video was asked for: tick Preview video and submit")
            return {"CANCELLED"}
        url, token = farm_settings(context)
        try:
            farm = farm_api.Farm(url, token)
            job, _retry = farm.job(job_id)
            if job.get("state") != "completed":
                self.report({"WARNING"}, "The preview video is not ready: job %s is %s" % (job_id, job.get("state")))
                return {"CANCELLED"}
            videos = [f for f in farm.outputs(job_id) if f.get("path", "").lower().endswith(".mp4")]
            if not videos:
                self.report({"ERROR"}, "Job %s made no video the farm keeps: with Upload files off it is %s under "
                            "the nodes' output folder" % (job_id, (job.get("params") or {}).get("output")))
                return {"CANCELLED"}
            video = videos[0]
            # Beside the .blend (an artist looks there first), else in the add-on's cache.
            base = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else pack.default_cache_dir()
            folder = os.path.join(base, "edgefarm-previews")
            os.makedirs(folder, exist_ok=True)
            dest = os.path.join(folder, "%s-%s" % (_safe(job_id), os.path.basename(video["path"])))
            if not (os.path.isfile(dest) and os.path.getsize(dest) == video["size"]):
                farm.download(video["sha256"], video["size"], dest)
        except (farm_api.FarmError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        st.video_path = dest
        if self.open:
            bpy.ops.wm.path_open(filepath=dest)
        self.report({"INFO"}, "Preview video: %s" % dest)
        return {"FINISHED"}


class EDGEFARM_OT_open_dashboard(bpy.types.Operator):
    """Open the farm's dashboard on this job"""

    bl_idname = "edgefarm.open_dashboard"
    bl_label = "Open in dashboard"

    def execute(self, context):
        link = context.scene.edgefarm.job_link
        if link:
            bpy.ops.wm.url_open(url=link)
        return {"FINISHED"}


def _apply(scene, sub):
    st = scene.edgefarm
    stage, message, progress = sub.snapshot()
    st.status = message
    st.progress = progress
    st.busy = not sub.finished
    if sub.missing:
        st.missing = "\n".join("%s %s: %s" % (m["kind"], m["name"], m["path"]) for m in sub.missing)
    if sub.finished and sub.result is not None:
        st.last_result = json.dumps(sub.result)
        if stage == "done":
            st.job_id = sub.result.get("job") or ""
            st.video_job = sub.result.get("video_job") or ""
            st.video_path = ""
            st.job_link = sub.result.get("link") or ""
            job = getattr(sub, "job", {})
            _apply_job(st, job)


def _apply_job(st, job):
    st.job_state = job.get("state", "")
    st.frames_done = int(job.get("frames_done", 0))
    st.frames_total = int(job.get("frames_total", 0))
    st.failed_tasks = int((job.get("counts") or {}).get("failed", 0))


def _follow_submission(scene_name):
    scene = bpy.data.scenes.get(scene_name)
    sub = _submissions.get(scene_name)
    if scene is None or sub is None:
        return None
    try:
        _apply(scene, sub)
    except ReferenceError:
        return None
    _redraw()
    if not sub.finished:
        return 0.2
    if sub.stage == "done":
        _start_poll(scene_name, sub.result.get("retry_after", 2.0))
    return None


# --- following the job ----------------------------------------------------------------------------


class _Poll:
    def __init__(self, scene_name, job_id, url, token):
        self.scene_name = scene_name
        self.job_id = job_id
        self.farm = farm_api.Farm(url, token, timeout=30)
        self.thread = None
        self.answer = None  # (job, retry_after) or FarmError message
        self.stopped = False

    def fetch(self):
        try:
            self.answer = self.farm.job(self.job_id)
        except farm_api.FarmError as e:
            self.answer = str(e)


def _start_poll(scene_name, first=2.0):
    scene = bpy.data.scenes.get(scene_name)
    if scene is None or not scene.edgefarm.job_id:
        return
    url, token = farm_settings(bpy.context)
    try:
        poll = _Poll(scene_name, scene.edgefarm.job_id, url, token)
    except farm_api.FarmError:
        return
    old = _polls.get(scene_name)
    if old is not None:
        old.stopped = True
    _polls[scene_name] = poll
    bpy.app.timers.register(lambda: _poll_tick(poll), first_interval=first, persistent=False)


def _poll_tick(poll):
    """A timer: apply the last answer, ask again at the server's Retry-After, stop when the job
    is finished (or another poll took over)."""
    if poll.stopped or _polls.get(poll.scene_name) is not poll:
        return None
    if poll.thread is not None and poll.thread.is_alive():
        return 0.25
    next_in = 2.0
    if poll.answer is not None:
        scene = bpy.data.scenes.get(poll.scene_name)
        if scene is None or scene.edgefarm.job_id != poll.job_id:
            return None
        answer, poll.answer = poll.answer, None
        if isinstance(answer, str):
            scene.edgefarm.status = "Following the job: %s" % answer
            next_in = 10.0
        else:
            job, next_in = answer
            _apply_job(scene.edgefarm, job)
            scene.edgefarm.status = "Job %s: %s, %d / %d frames" % (
                job.get("name", poll.job_id), job.get("state"), job.get("frames_done", 0), job.get("frames_total", 0))
            _redraw()
            if job.get("state") in ("completed", "failed", "canceled"):
                return None
        return next_in
    poll.thread = threading.Thread(target=poll.fetch, daemon=True)
    poll.thread.start()
    return 0.25


@persistent
def _on_load(_dummy):
    for p in _polls.values():
        p.stopped = True
    _polls.clear()
    if bpy.app.background:
        return
    for scene in bpy.data.scenes:
        st = scene.edgefarm
        st.busy = False
        if st.job_id and st.job_state not in ("completed", "failed", "canceled"):
            _start_poll(scene.name, 1.0)


# --- the panel --------------------------------------------------------------------------------------


def _wrap(text, width):
    out = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = (line + " " + word) if line else word
        out.append(line)
    return out


class EDGEFARM_PT_render(bpy.types.Panel):
    bl_label = "edgefarm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        st = scene.edgefarm
        width = max(30, int((context.region.width if context.region else 420) / 7))
        url, _token = farm_settings(context)
        if not url:
            layout.label(text="Set the farm URL in Preferences > Add-ons > edgefarm", icon="ERROR")
        col = layout.column()
        col.enabled = not st.busy
        col.prop(st, "job_name")
        col.prop(st, "use_scene_range")
        rng = col.column(align=True)
        owner, prefix = (scene, "frame_") if st.use_scene_range else (st, "frame_")
        rng.prop(owner, prefix + "start", text="Frame Start")
        rng.prop(owner, prefix + "end", text="End")
        rng.prop(owner, prefix + "step", text="Step")
        col.prop(st, "chunk_size")
        col.prop(st, "priority")
        col.prop(st, "tags")
        col.prop(st, "output")
        col.prop(st, "upload")
        if st.upload:
            col.prop(st, "project_root")
        col.prop(st, "preview_video")
        if st.busy:
            row = layout.row()
            row.prop(st, "progress", text=st.status or "Working", slider=True)
            row.operator("edgefarm.cancel", icon="CANCEL")
        else:
            layout.operator("edgefarm.submit", icon="RENDER_ANIMATION", text="Submit")
            if st.status:
                for line in _wrap(st.status, width):
                    layout.label(text=line)
        if st.missing and not st.busy:
            box = layout.box()
            box.label(text="Missing files (fix them, or submit anyway):", icon="ERROR")
            for line in st.missing.split("\n")[:12]:
                box.label(text=line)
            op = box.operator("edgefarm.submit", text="Submit anyway")
            op.allow_missing = True
        if st.job_id:
            box = layout.box()
            box.label(text="Job %s" % st.job_id)
            box.label(text="State: %s   frames %d / %d   failed tasks %d" % (
                st.job_state or "?", st.frames_done, st.frames_total, st.failed_tasks))
            if st.frames_total:
                box.label(text="%.0f%% done" % (100.0 * st.frames_done / st.frames_total))
            box.operator("edgefarm.open_dashboard", icon="URL")
            if st.video_job:
                box.operator("edgefarm.get_video", icon="FILE_MOVIE")
                if st.video_path:
                    box.label(text=st.video_path)


classes = (
    EdgefarmPreferences,
    EdgefarmSceneSettings,
    EDGEFARM_OT_test_connection,
    EDGEFARM_OT_submit,
    EDGEFARM_OT_cancel,
    EDGEFARM_OT_open_dashboard,
    EDGEFARM_OT_get_video,
    EDGEFARM_PT_render,
)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.Scene.edgefarm = bpy.props.PointerProperty(type=EdgefarmSceneSettings)
    bpy.app.handlers.load_post.append(_on_load)


def unregister():
    for sub in _submissions.values():
        sub.cancel()
    for p in _polls.values():
        p.stopped = True
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    del bpy.types.Scene.edgefarm
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
