"""The ComfyUI binding of vap_core (V3 node API). Imported only inside ComfyUI."""
from comfy_api.latest import ComfyExtension


class VAPExtension(ComfyExtension):
    async def get_node_list(self):
        return []  # the VAP nodes come with the ComfyUI binding (issue: ComfyUI nodes)


async def comfy_entrypoint() -> VAPExtension:
    return VAPExtension()
