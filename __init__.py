"""ComfyUI entry point of the Video-As-Prompt node pack.

Outside ComfyUI (tests, plain-Python use of vap_core) there is no `comfy_api` to import and the
pack registers nothing, so vap_core and the tests import anywhere.
"""
try:
    import comfy_api.latest  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    pass
else:
    from .nodes import comfy_entrypoint  # noqa: F401
