// Builds a UI workflow from an API workflow with ComfyUI's own frontend, so its widgets_values are in
// the order this frontend reads them (it adds control widgets after seeds and upload buttons last),
// then lays it out like a stock template: coloured groups, a note, prompt colours, fitted sizes.
//
//   node tools/browser/build_ui_workflow.mjs SERVER_URL API.json LAYOUT.json OUT.json THUMBNAIL.jpg
//
// LAYOUT.json: {"note": "...", "columns": [[{"title", "nodes": [api ids], "note"?: true}, ...], ...],
//               "positive": [ids], "negative": [ids], "heights": {id: px}, "models": {file: {url, directory}}}
import fs from "fs";
import { launch, openComfy } from "./comfy_page.mjs";

const [url, apiPath, layoutPath, outPath, thumbnailPath] = process.argv.slice(2);
const api = JSON.parse(fs.readFileSync(apiPath, "utf8"));
const layout = JSON.parse(fs.readFileSync(layoutPath, "utf8"));

const browser = await launch();
try {
  const { page } = await openComfy(browser, url);
  const workflow = await page.evaluate(async (api, layout) => {
    const app = window.app;
    await app.loadApiJson(api, "workflow");
    const graph = app.graph;
    const byId = (id) => graph.getNodeById(Number(id));
    const COLUMN_WIDTH = 400, GAP = 40, TITLE = 50, PAD = 10, NODE_GAP = 50;
    const colors = { positive: ["#232", "#353"], negative: ["#322", "#533"], note: ["#432", "#653"] };

    if (layout.note) {
      const note = window.LiteGraph.createNode("MarkdownNote");
      note.title = "How to use Video-As-Prompt";
      note.widgets[0].value = layout.note;
      [note.color, note.bgcolor] = colors.note;
      graph.add(note);
      layout.noteId = note.id;
    }
    for (const id of layout.positive) [byId(id).color, byId(id).bgcolor] = colors.positive;
    for (const id of layout.negative) [byId(id).color, byId(id).bgcolor] = colors.negative;

    let x = 0;
    for (const column of layout.columns) {
      let y = 0;
      for (const group of column) {
        const ids = group.nodes.map((id) => (id === "note" ? layout.noteId : Number(id)));
        let top = y + TITLE;
        for (const id of ids) {
          const node = graph.getNodeById(id);
          const [, h] = node.computeSize();
          node.size = [COLUMN_WIDTH - 2 * PAD, Math.max(h, layout.heights?.[id] ?? (id === layout.noteId ? layout.noteHeight : 0))];
          node.pos = [x + PAD, top + 30];  // the title bar sits above pos
          top += node.size[1] + NODE_GAP;
        }
        const g = new window.LiteGraph.LGraphGroup(group.title);
        g.color = "#3f789e";
        g.font_size = 24;
        g._bounding.set([x, y, COLUMN_WIDTH, top - y]);
        graph.add(g);
        y = top + GAP;
      }
      x += COLUMN_WIDTH + GAP;
    }
    for (const node of graph.nodes) {
      const file = node.widgets?.[0]?.value;
      const model = layout.models?.[file];
      if (model) node.properties.models = [{ name: file, ...model }];
    }
    for (const [id, value] of Object.entries(layout.controls ?? {})) {
      byId(id).widgets.find((w) => w.name === "control_after_generate").value = value;
    }
    // open at a zoom where widgets still draw, showing the graph from its top-left corner
    app.canvas.ds.scale = layout.scale;
    app.canvas.ds.offset = [20, 20];
    return graph.serialize();
  }, api, layout);
  fs.writeFileSync(outPath, JSON.stringify(workflow, null, 2) + "\n");
  // the template browser's card: the graph as it opens, scaled down
  await page.evaluate(() => {
    Object.assign(window.app.canvas.ds, { scale: 0.5, offset: [130, 40] });  // clear of the side bar
    window.app.canvas.setDirty(true, true);
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const canvas = await page.$("#graph-canvas");
  await canvas.screenshot({ path: thumbnailPath, type: "jpeg", quality: 80,
    clip: { x: 0, y: 0, width: 1280, height: 720 } });
} finally {
  await browser.close();
}
