// The pack's subgraph blueprint as a user meets it in ComfyUI 0.33's real frontend: listed at
// /global_subgraphs, found by the node search box, dropped into the stock Wan 2.1 image-to-video
// template and wired in (model loader -> it -> ModelSamplingSD3, WanImageToVideo -> it -> KSampler),
// then what the frontend would queue, and a run from the UI with the tiny test models. Prints one JSON
// object; tests/test_subgraph.py asserts on it.
//
//   node tests/browser/check_subgraph.mjs SERVER_URL NAME TINY.json OUT_DIR
//
// TINY.json: {"swap": {class_type: test class_type}, "widgets": {class_type: {widget: value}},
//             "host": {promoted widget: value}, "inner": {class_type inside the subgraph: {widget: value}},
//             "graph"?: {"api": API workflow, "remove": [api ids], "in": [[api id, slot, input]],
//                        "out": [[output slot, api id, input name]]}}
// Without "graph" the blueprint goes into the stock Wan 2.1 I2V template; with it, into that API workflow
// with the `remove` nodes taken out, wired by "in" (into the blueprint) and "out" (from it).
import fs from "fs";
import path from "path";
import { closeDialogs, launch, openComfy, runFromUI } from "../../tools/browser/comfy_page.mjs";

const [url, name, tinyPath, outDir] = process.argv.slice(2);
const tiny = JSON.parse(fs.readFileSync(tinyPath, "utf8"));
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const result = {};

// a user who has been here before: no template browser opening by itself over the canvas
await fetch(`${url}/api/settings/Comfy.TutorialCompleted`, { method: "POST", body: "true" });
const browser = await launch();
try {
  const { page, errors } = await openComfy(browser, url);
  const startupErrors = errors.length;
  result.listed = await page.evaluate(async () => Object.values(await (await fetch("/global_subgraphs")).json()));
  await page.evaluate(async (graph) => {
    if (!graph) {
      await window.app.loadGraphData(await (await fetch("/templates/image_to_video_wan.json")).json());
      return;
    }
    await window.app.loadApiJson(graph.api, "workflow");
    for (const id of graph.remove) window.app.graph.remove(window.app.graph.getNodeById(Number(id)));
  }, tiny.graph);
  await closeDialogs(page);

  // as a user adds a node: a double click on empty canvas opens the search box; a busy machine may list the
  // blueprint late, so the search is tried again with longer waits before the check below
  const isAdded = () => page.evaluate((name) => window.app.graph.nodes.some((n) => n.title === name && n.isSubgraphNode?.()), name);
  for (const wait of [1500, 3000, 6000]) {
    await page.mouse.click(1500, 900, { count: 2 });
    await pause(1000);
    await page.keyboard.type(name);
    await pause(wait);
    await page.keyboard.press("Enter");
    await pause(1500);
    if (await isAdded()) break;
    await page.keyboard.press("Escape");
  }

  result.added = await page.evaluate((name, host) => {
    const graph = window.app.graph;
    const node = graph.nodes.find((n) => n.title === name && n.isSubgraphNode?.());
    if (!node) return null;
    const summary = () => ({ id: String(node.id), inputs: node.inputs.map((i) => i.name),
      outputs: node.outputs.map((o) => o.name), widgets: Object.fromEntries(node.widgets.map((w) => [w.name, w.value])),
      inner: node.subgraph.nodes.map((n) => [String(n.id), n.type]) });
    if (host) {
      const byId = (id) => graph.getNodeById(Number(id));
      for (const [id, slot, input] of host.in) byId(id).connect(slot, node, node.findInputSlot(input));
      for (const [slot, id, input] of host.out) node.connect(slot, byId(id), byId(id).findInputSlot(input));
      return summary();
    }
    const of = (type) => graph.nodes.find((n) => n.type === type);
    const wires = [["UNETLoader", 0, "model"], ["CLIPLoader", 0, "clip"], ["WanImageToVideo", 0, "positive"],
      ["WanImageToVideo", 1, "negative"], ["VAELoader", 0, "vae"], ["CLIPVisionLoader", 0, "clip_vision"]];
    for (const [type, slot, input] of wires) of(type).connect(slot, node, node.findInputSlot(input));
    node.connect(0, of("ModelSamplingSD3"), 0);
    node.connect(1, of("KSampler"), of("KSampler").findInputSlot("positive"));
    node.connect(2, of("KSampler"), of("KSampler").findInputSlot("negative"));
    const below = of("CLIPVisionEncode");  // in the free space under it, for the screenshot
    node.pos = [below.pos[0], below.pos[1] + 160];
    return summary();
  }, name, tiny.graph);
  if (result.added) {
    result.prompt = (await page.evaluate(() => window.app.graphToPrompt())).output;
    await page.evaluate(() => {  // the view moved up, so the whole node shows below the template's
      window.app.canvas.ds.offset[1] -= 150;
      window.app.canvas.setDirty(true, true);
    });
    await pause(500);
    await page.screenshot({ path: path.join(outDir, tiny.graph ? `subgraph in ${tiny.graph.name}.jpg` : "subgraph in the stock Wan 2.1 I2V graph.jpg"), type: "jpeg", quality: 80 });

    // run it from the UI with the tiny models: the test loaders swapped in, tiny sizes and inputs
    await page.evaluate(async (tiny, id) => {
      const data = window.app.graph.serialize();
      for (const node of data.nodes) node.type = tiny.swap[node.type] ?? node.type;
      await window.app.loadGraphData(data);
      const graph = window.app.graph;
      const set = (node, name, value) => {
        const widget = node.widgets.find((w) => w.name === name);
        if (!widget) throw new Error(`${node.type} has no widget ${name}`);
        widget.value = value;
      };
      for (const node of graph.nodes) {
        for (const [name, value] of Object.entries(tiny.widgets[node.type] ?? {})) set(node, name, value);
      }
      const host = graph.getNodeById(Number(id));
      for (const [name, value] of Object.entries(tiny.host)) set(host, name, value);
      for (const [type, values] of Object.entries(tiny.inner)) {
        const inner = host.subgraph.nodes.find((n) => n.type === type);
        for (const [name, value] of Object.entries(values)) set(inner, name, value);
      }
    }, tiny, result.added.id);
    result.run = await runFromUI(page);
  }
  // a newer frontend asks this ComfyUI for endpoints it does not have yet (404): not the pack's doing
  result.page_errors = errors.slice(startupErrors).filter((e) => !e.includes("Failed to load resource") && !/\b404\b/.test(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
