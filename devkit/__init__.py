"""The development harness that tests, benchmarks and the demos import: finding and driving a ComfyUI
(comfy_server over HTTP, comfy_process in-process), tiny random models and their test-only loader nodes,
the golden cases and checkpoint writers, test clips, memory measurement. Not shipped (.comfyignore)."""
