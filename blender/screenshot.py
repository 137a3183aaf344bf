# Screenshot of the edgefarm panel in Render Properties, for docs/BLENDER.md. Run by
# scripts/blender-addon-screenshot under Xvfb (Blender draws there with Mesa's software GL):
#   blender FILE.blend --python blender/screenshot.py -- OUT.png
# The job fields are filled in by hand so the picture shows a followed job.
import sys

import addon_utils
import bpy

out = sys.argv[sys.argv.index("--") + 1]
addon_utils.enable("edgefarm", default_set=True)
p = bpy.context.preferences.addons["edgefarm"].preferences
p.url = "https://farm.example:8443"
p.token = "secret"
st = bpy.context.scene.edgefarm
st.job_id = "0192f0c4-7b6e-7c4a-9d1e-3f5a2b8c9d10"
st.job_state = "active"
st.frames_done = 1
st.frames_total = 2
st.preview_video = True
st.video_job = "0192f0c4-7b6e-7c4a-9d1e-3f5a2b8c9d11"
st.status = ("Submitted job 0192f0c4-...: uploaded 5 files (0.9 MiB), 0 already on the farm. "
             "Preview video: job 0192f0c4-...d11.")

def props_area(win):
    for area in win.screen.areas:
        if area.type == "PROPERTIES":
            return area

def setup():
    win = bpy.context.window_manager.windows[0]
    area = props_area(win)
    area.spaces[0].context = "RENDER"
    with bpy.context.temp_override(window=win, area=area):
        bpy.ops.screen.screen_full_area()
    return None

def shoot():
    win = bpy.context.window_manager.windows[0]
    area = props_area(win)
    with bpy.context.temp_override(window=win, area=area):
        bpy.ops.screen.screenshot_area(filepath=out)
    bpy.ops.wm.quit_blender()
    return None

bpy.app.timers.register(setup, first_interval=1.0)

bpy.app.timers.register(shoot, first_interval=4.5)
