"""The pack's ComfyUI nodes (V3 API). Node IDs are stable: shared workflows rely on them."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from . import folders
from .apply import VAPApplyExpert
from .cog_nodes import VAPCogVideoXImageToVideo
from .guider import VAPReferenceGuider
from .loaders import VAPCheckpointLoader, VAPExpertLoader
from .reference_nodes import VAPEncodeReference, VAPLoadReferenceVideo

folders.register()


class VAPExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [VAPCheckpointLoader, VAPExpertLoader, VAPApplyExpert, VAPLoadReferenceVideo, VAPEncodeReference,
                VAPReferenceGuider, VAPCogVideoXImageToVideo]


async def comfy_entrypoint() -> VAPExtension:
    return VAPExtension()
