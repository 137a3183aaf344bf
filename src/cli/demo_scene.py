# The scene `edgefarm demo` renders: the factory cube, coloured and turning on a floor, with
# Cycles at 320x180 and 16 samples (about a second a frame on one core), frames 1-24.
# Denoising stays off: some distribution builds of Blender (Debian's) abort when it is on.
# Usage: blender -b --factory-startup --python demo_scene.py -- OUT.blend
import math
import sys

import bpy

out = sys.argv[sys.argv.index("--") + 1]
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.render.resolution_x = 320
scene.render.resolution_y = 180
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start = 1
scene.frame_end = 24


def material(name, rgb):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    return mat


cube = bpy.data.objects.get("Cube")
if cube is not None:
    cube.data.materials.clear()
    cube.data.materials.append(material("edgefarm orange", (0.9, 0.35, 0.05)))
    cube.rotation_euler = (0.0, 0.0, 0.0)
    cube.keyframe_insert(data_path="rotation_euler", frame=1)
    cube.rotation_euler = (0.0, 0.0, math.pi / 2)
    cube.keyframe_insert(data_path="rotation_euler", frame=24)
bpy.ops.mesh.primitive_plane_add(size=40, location=(0.0, 0.0, -1.0))
bpy.context.active_object.data.materials.append(material("floor", (0.6, 0.62, 0.65)))
light = bpy.data.objects.get("Light")
if light is not None:
    light.data.energy = 1500
if scene.world is not None:
    scene.world.color = (0.25, 0.3, 0.4)
bpy.ops.wm.save_as_mainfile(filepath=out)
