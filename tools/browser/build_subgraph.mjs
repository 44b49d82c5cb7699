// Builds the pack's subgraph blueprint with ComfyUI's own frontend: the VAP nodes of a shipped API
// workflow turned into one subgraph node (the frontend's "Convert to Subgraph"), the chosen widgets
// promoted onto it in a fixed order, then saved as the frontend's "Publish Subgraph" saves a blueprint.
//
//   node tools/browser/build_subgraph.mjs SERVER_URL API.json SPEC.json OUT.json
//
// SPEC.json: {"name", "description", "category", "nodes": [api ids],
//             "widgets": [[api id, widget name, input name, label], ...]}   (promoted in this order)
import fs from "fs";
import { launch, openComfy } from "./comfy_page.mjs";

const [url, apiPath, specPath, outPath] = process.argv.slice(2);
const api = JSON.parse(fs.readFileSync(apiPath, "utf8"));
const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));

const browser = await launch();
try {
  const { page } = await openComfy(browser, url);
  const blueprint = await page.evaluate(async (api, spec) => {
    const app = window.app;
    await app.loadApiJson(api, "workflow");
    const graph = app.graph;
    const { node, subgraph } = graph.convertToSubgraph(new Set(spec.nodes.map((id) => graph.getNodeById(Number(id)))));
    // the frontend promotes what it guesses a user wants (texts, seeds); the spec says what and in which order
    for (const input of [...subgraph.inputs]) {
      const target = subgraph.getNodeById(input.linkIds.length ? subgraph.getLink(input.linkIds[0]).target_id : null);
      const slot = target?.inputs?.find((i) => i.link === input.linkIds[0]);
      if (slot?.widget) subgraph.removeInput(input);
    }
    for (const [id, name, inputName, label] of spec.widgets) {
      const inner = subgraph.getNodeById(Number(id));
      const widget = inner.widgets.find((w) => w.name === name);
      if (!widget) throw new Error(`${inner.type} has no widget ${name}`);
      const slot = inner.getSlotFromWidget(widget);
      const input = subgraph.addInput(inputName, String(slot.type ?? widget.type));
      input.label = label;
      if (!input.connect(slot, inner)) throw new Error(`could not promote ${inner.type}.${name}`);
    }
    subgraph.name = node.title = spec.name;
    const { nodes, subgraphs } = app.canvas._serializeItems([node]);
    // the node library's description and category (Subgraph Blueprints/<category>), as the stock blueprints have them
    Object.assign(subgraphs[0], { description: spec.description, category: spec.category });
    return { revision: 0, last_node_id: node.id, last_link_id: 0, nodes, links: [], version: 0.4,
      definitions: { subgraphs } };
  }, api, spec);
  fs.writeFileSync(outPath, JSON.stringify(blueprint, null, 2) + "\n");
} finally {
  await browser.close();
}
