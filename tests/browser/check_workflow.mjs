// Opens a shipped UI workflow in ComfyUI's real frontend as a user does, checks what the frontend made
// of it, then runs it from the UI with the tiny test models. Prints one JSON object; the pytest side
// (tests/test_browser.py) asserts on it.
//
//   node tests/browser/check_workflow.mjs SERVER_URL UI.json API.json TINY.json OUT_DIR
//
// TINY.json: {"swap": {class_type: test class_type}, "widgets": {class_type: {widget: value}},
//             "user_files": [[class_type, widget], ...],   (the user's own input files, not in any list)
//             "searches": [query, ...]}                    (typed into the node library's search box)
import fs from "fs";
import path from "path";
import { closeDialogs, launch, openComfy, runFromUI } from "../../tools/browser/comfy_page.mjs";

const [url, uiPath, apiPath, tinyPath, outDir] = process.argv.slice(2);
const workflow = JSON.parse(fs.readFileSync(uiPath, "utf8"));
const api = JSON.parse(fs.readFileSync(apiPath, "utf8"));
const tiny = JSON.parse(fs.readFileSync(tinyPath, "utf8"));
const templateName = path.basename(uiPath, ".json");
const result = { step_errors: {} };

// Runs one step of the check; a step that throws is recorded and the others still run.
async function step(name, fn) {
  try {
    await fn();
  } catch (err) {
    result.step_errors[name] = String(err.stack ?? err).slice(0, 2000);
  }
}

// In the page: what is wrong with the graph as the frontend holds it now.
function inspectGraph(userFiles) {
  const { app, LiteGraph } = window;
  const graph = app.graph;
  const problems = { missing_types: [], broken_links: [], mismatched_links: [], bad_widgets: [] };
  for (const node of graph.nodes) {
    if (!LiteGraph.registered_node_types[node.type]) problems.missing_types.push(node.type);
  }
  const links = graph.links instanceof Map ? [...graph.links.values()] : Object.values(graph.links);
  for (const link of links) {
    const from = graph.getNodeById(link.origin_id), to = graph.getNodeById(link.target_id);
    const out = from?.outputs?.[link.origin_slot], inp = to?.inputs?.[link.target_slot];
    if (!out || !inp || inp.link !== link.id || !(out.links ?? []).includes(link.id)) {
      problems.broken_links.push(link.id);
    } else if (out.type !== link.type || !LiteGraph.isValidConnection(out.type, inp.type)) {
      problems.mismatched_links.push(`${from.type}.${out.name} (${out.type}) -> ${to.type}.${inp.name} (${inp.type})`);
    }
  }
  for (const node of graph.nodes) {
    for (const input of node.inputs ?? []) {
      if (input.link != null && !links.some((l) => l.id === input.link)) problems.broken_links.push(`${node.type}.${input.name}`);
    }
    for (const w of node.widgets ?? []) {
      if (w.type === "button") continue;
      const where = `${node.type}.${w.name} = ${JSON.stringify(w.value)}`;
      const o = w.options ?? {};
      if (w.value === undefined || w.value === null) {
        problems.bad_widgets.push(`${where} (no value)`);
      } else if (w.type === "number") {
        if (typeof w.value !== "number" || !Number.isFinite(w.value)) problems.bad_widgets.push(`${where} (not a number)`);
        else if ((o.min != null && w.value < o.min) || (o.max != null && w.value > o.max)) {
          problems.bad_widgets.push(`${where} (outside ${o.min}..${o.max})`);
        }
      } else if (w.type === "combo") {
        const values = typeof o.values === "function" ? o.values(w, node) : o.values;
        const userFile = userFiles.some(([type, name]) => type === node.type && name === w.name);
        if (!userFile && !(values ?? []).includes(w.value)) problems.bad_widgets.push(`${where} (not one of its options)`);
      } else if (["text", "customtext", "string"].includes(w.type) && typeof w.value !== "string") {
        problems.bad_widgets.push(`${where} (not text)`);
      }
    }
  }
  return problems;
}

// In the page: graphToPrompt's API graph against the shipped API workflow (same nodes, inputs, values).
// An input the API workflow leaves out may come with its default: one that a newer ComfyUI added to a
// node (0.33's CreateVideo.bit_depth), or a sub-input of a dynamic combo ("format.codec").
async function promptDifferences(api) {
  const { output } = await window.app.graphToPrompt();
  const objectInfo = await (await fetch("/api/object_info")).json();
  const defaultOf = (classType, name, values) => {
    let inputs = objectInfo[classType]?.input, config;
    const path = name.split(".");
    for (const [i, part] of path.entries()) {
      config = inputs?.required?.[part] ?? inputs?.optional?.[part];
      if (!config) return undefined;
      if (i < path.length - 1) inputs = config[1]?.options?.find((o) => o.key === values[path.slice(0, i + 1).join(".")])?.inputs;
    }
    const [type, options = {}] = config;
    return options.default ?? (Array.isArray(type) ? type[0] : options.options?.[0]?.key ?? options.options?.[0]);
  };
  const diffs = [];
  const ids = new Set([...Object.keys(output), ...Object.keys(api)]);
  for (const id of ids) {
    const a = output[id], b = api[id];
    if (!a || !b || a.class_type !== b.class_type) { diffs.push(`node ${id}: ${a?.class_type} vs ${b?.class_type}`); continue; }
    const names = new Set([...Object.keys(a.inputs), ...Object.keys(b.inputs)]);
    for (const name of names) {
      if (!(name in b.inputs) && JSON.stringify(a.inputs[name]) === JSON.stringify(defaultOf(b.class_type, name, a.inputs))) continue;
      if (JSON.stringify(a.inputs[name]) !== JSON.stringify(b.inputs[name])) {
        diffs.push(`${b.class_type} (${id}).${name}: UI gives ${JSON.stringify(a.inputs[name])}, API has ${JSON.stringify(b.inputs[name])}`);
      }
    }
  }
  return diffs;
}

const browser = await launch();
try {
  const { page, errors } = await openComfy(browser, url);
  const startupErrors = errors.length;  // the frontend's own, before any workflow is opened

  await step("open the file", async () => {
    await page.evaluate((wf) => window.app.loadGraphData(wf), workflow);
    result.loaded = await page.evaluate(inspectGraph, tiny.user_files);
    result.loaded.prompt_differences = await page.evaluate(promptDifferences, api);
    result.loaded.scale = await page.evaluate(() => window.app.canvas.ds.scale);
    result.loaded.groups = await page.evaluate(() => window.app.graph.groups.map((g) => g.title));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await page.screenshot({ path: path.join(outDir, `${templateName}.png`) });
  });

  await step("template browser", async () => {
    await page.evaluate(() => window.app.graph.clear());
    result.template = await page.evaluate(async (name) => {
      const list = await (await fetch("/api/workflow_templates")).json();
      const module = Object.keys(list).find((m) => list[m].includes(name));
      return { module, listed: list };
    }, templateName);
    if (result.template.module) {
      const thumb = await page.evaluate(async (m, n) => {
        const r = await fetch(`/api/workflow_templates/${encodeURIComponent(m)}/${encodeURIComponent(n)}.jpg`);
        return { status: r.status, type: r.headers.get("content-type"), bytes: (await r.arrayBuffer()).byteLength };
      }, result.template.module, templateName);
      result.template.thumbnail = thumb;
      await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
      // the markup differs between frontend versions: the module is a list item or a span, the card title an h3
      const inDialog = (tags, text) => `xpath///*[contains(@class, "p-dialog") or @role="dialog"]//*[${tags}]` +
        `[normalize-space(.)=${JSON.stringify(text)}]`;
      const moduleEntry = inDialog("self::li or self::span", result.template.module);
      await page.waitForSelector(moduleEntry, { timeout: 30000 }).catch(() => null);
      await new Promise((resolve) => setTimeout(resolve, 1500));  // the dialog renders its list twice
      await (await page.$(moduleEntry))?.click();
      const card = await page.waitForSelector(inDialog("self::h3", templateName), { timeout: 30000 }).catch(() => null);
      result.template.card_found = Boolean(card);
      await page.screenshot({ path: path.join(outDir, `${templateName} - template browser.png`) });
      if (card) {
        await card.click();
        await closeDialogs(page);
        await page.waitForFunction(() => window.app.graph.nodes.length > 0, { timeout: 30000 }).catch(() => null);
        result.template.loaded = await page.evaluate(inspectGraph, tiny.user_files);
        result.template.loaded.node_count = await page.evaluate(() => window.app.graph.nodes.length);
        result.template.loaded.prompt_differences = await page.evaluate(promptDifferences, api);
      }
    }
    await closeDialogs(page);
  });

  await step("node library search", async () => {
    await page.evaluate(() => window.app.extensionManager.command.execute("Workspace.ToggleSidebarTab.node-library"));
    result.library = {};
    for (const query of tiny.searches) {
      // its placeholder: "Search Nodes..." (frontends 1.27 and 1.58), "Search..." (1.49)
      const input = await page.waitForSelector("input[placeholder='Search Nodes...'], input[placeholder='Search...']",
        { timeout: 30000, visible: true });
      await input.click({ count: 3 });
      await input.type(query);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // every text the page shows now (the search's result list has its own markup in each frontend version)
      result.library[query] = await page.evaluate(() => [...document.querySelectorAll("body *")]
        .filter((e) => e.children.length === 0 && e.textContent.trim()).map((e) => e.textContent.trim()));
    }
    await page.evaluate(() => window.app.extensionManager.command.execute("Workspace.ToggleSidebarTab.node-library"));
  });

  await step("run from the UI", async () => {
    await page.evaluate(async (wf, tiny) => {
      const data = structuredClone(wf);
      for (const node of data.nodes) node.type = tiny.swap[node.type] ?? node.type;
      await window.app.loadGraphData(data);
      for (const node of window.app.graph.nodes) {
        for (const [name, value] of Object.entries(tiny.widgets[node.type] ?? {})) {
          const widget = node.widgets.find((w) => w.name === name);
          if (!widget) throw new Error(`${node.type} has no widget ${name}`);
          widget.value = value;
        }
      }
    }, workflow, tiny);
  result.run = await runFromUI(page);
  const saved = (result.run.outputs ?? []).flatMap((o) => o.output?.images ?? []).find((f) => /\.(mp4|webm)$/.test(f.filename));
  result.run.video = saved ? await page.evaluate(async (f) => {
    const video = document.createElement("video");
    video.muted = true;
    video.src = `/api/view?filename=${encodeURIComponent(f.filename)}&subfolder=${encodeURIComponent(f.subfolder)}&type=${f.type}`;
    document.body.appendChild(video);
    await new Promise((resolve) => { video.onloadeddata = resolve; video.onerror = resolve; setTimeout(resolve, 20000); });
    const loaded = { file: f, readyState: video.readyState, duration: video.duration, error: video.error?.message ?? null };
    await video.play().catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { ...loaded, played_to: video.currentTime };
  }, saved) : null;
  await page.screenshot({ path: path.join(outDir, `${templateName} - after run.png`) });
  });
  // a newer frontend asks this ComfyUI for endpoints it does not have yet (404): not the pack's doing
  result.page_errors = errors.slice(startupErrors).filter((e) => !e.includes("Failed to load resource") && !/\b404\b/.test(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
