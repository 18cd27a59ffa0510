// A stand-in backend for working on the UI in a plain browser (`npm run dev`, then /demo.html):
// canned nodes and slow, word-by-word "generation" behind Tauri's own IPC mock. Never part of the
// build, which has index.html as its only entry.
import type { Channel } from "@tauri-apps/api/core";
import { mockIPC } from "@tauri-apps/api/mocks";
import type {
  HostStatus,
  LiveState,
  Message,
  ModelInfo,
  NodeKind,
  NodeView,
  GenerateParams,
} from "../lib/bindings";
import type { NodeId } from "../lib/api";

const model: ModelInfo = {
  name: "TinyLlama-1.1B-Chat-v1.0",
  path: "/home/me/.cache/freeze-attn/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
  format: "gguf",
  weight_type: "Q4_K_M",
  bytes: 668_788_096,
  device: "CPU",
  kernels: "avx2",
  context_length: 2048,
  n_layer: 22,
  vocab_size: 32000,
  fingerprint: "3f2a9c0d11e4b7a8c2d5e6f7a8b9c0d1",
  has_chat_template: true,
};

let params: GenerateParams = {
  temperature: 0.8,
  top_p: 0.95,
  top_k: 40,
  min_p: 0.05,
  repeat_penalty: 1.1,
  repeat_last_n: 64,
  max_tokens: 256,
  stop_strings: [],
  chunk: 512,
  seed: 42,
};
let nextId = 20;
const now = Math.floor(Date.now() / 1000);

function mk(id: NodeId, parent: NodeId | null, name: string, kind: NodeKind, tokens: number, extra: Partial<NodeView> = {}): NodeView {
  return {
    id, parent, name, kind, notes: "", preview: "", tags: [], pinned: false, token_count: tokens, own_bytes: tokens * 2 * 22 * 256 * 2 * 2,
    model_name: model.name, model_fingerprint: model.fingerprint, model_path: model.path, compatible: true, created_at: now - 86400 + id * 60, updated_at: now, depth: 0, ...extra,
  };
}

let nodes: NodeView[] = [
  mk(1, null, "Socratic tutor", "personality", 412, { preview: "You are a Socratic tutor. Answer with a guiding question before explaining.", pinned: true, tags: ["teaching"], notes: "Answers with questions first." }),
  mk(2, 1, "Fractions lesson", "chat", 236, { preview: "What happens to each piece when you cut a cake into more pieces?", tags: ["math"] }),
  mk(3, 2, "Fractions · harder", "chat", 180, { preview: "So which is bigger, 3/4 or 5/7? Try giving both the same denominator." }),
  mk(4, 1, "Geometry lesson", "chat", 305, { preview: "What do you notice about the angles of any triangle you draw?", tags: ["math"] }),
  mk(5, null, "The lighthouse", "story", 520, { preview: "The keeper had not spoken to anyone in eleven days when the lamp went dark.", tags: ["fiction"] }),
  mk(6, 5, "The lighthouse · storm", "story", 140, { preview: "By midnight the storm had torn the shutters from the lantern room." }),
  mk(7, 5, "The lighthouse · letter", "story", 166, { preview: "Under the door lay a letter, dry, though the rain had not stopped for days." }),
  mk(8, 6, "Storm · rescue", "story", 98, { preview: "A light answered from the water: someone was rowing towards the rocks." }),
  mk(9, null, "Attention Is All You Need", "document", 11840, { preview: "The dominant sequence transduction models are based on complex recurrent or convolutional neural networks…", tags: ["papers"] }),
  mk(10, null, "Pirate captain", "personality", 260, { preview: "Ye be speakin' to Captain Redbeard. State yer business.", compatible: false, model_name: "Llama-2-7B-Chat", model_path: "/models/llama-2-7b-chat.Q4_K_M.gguf" }),
];

const transcripts = new Map<NodeId, LiveState["transcript"]>([
  [2, { mode: "chat", messages: [
    { role: "system", content: "You are a Socratic tutor. Answer with a guiding question before explaining." },
    { role: "user", content: "Why is 1/2 bigger than 1/3?" },
    { role: "assistant", content: "Imagine one pizza shared by two people, and another shared by three. In which case does each person get more?" },
    { role: "user", content: "Two people, so each gets more." },
    { role: "assistant", content: "Exactly. The bottom number counts the pieces; more pieces means each piece is smaller. So 1/2 > 1/3." },
  ] }],
  [5, { mode: "text", text: "The lighthouse keeper had not spoken to anyone in three winters. Each night he climbed the hundred and twelve steps, trimmed the wick, and watched the dark water for ships that never came.\n\nThen, on the first night of spring, a light answered his own from far out at sea." }],
]);

let live: LiveState = { node: 2, kind: "chat", dirty: false, token_count: 236, context_length: 2048, transcript: transcripts.get(2)! };
let stopRequested = false;
let lastQA: Message[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fail = (code: string, message: string) => Promise.reject({ code, message });
const byId = (id: NodeId) => nodes.find((n) => n.id === id);

async function stream(words: string, onEvent: Channel<unknown>, wrap: (t: string) => unknown = (text) => ({ kind: "text", text })) {
  let out = "";
  for (const w of words.split(/(?<= )/)) {
    if (stopRequested) break;
    await sleep(45);
    out += w;
    onEvent.onmessage(wrap(w));
  }
  return out;
}

function transcriptOf(id: NodeId): LiveState["transcript"] {
  const n = byId(id)!;
  return transcripts.get(id) ?? (n.kind === "story" ? { mode: "text", text: transcripts.get(5)!.mode === "text" ? (transcripts.get(5) as { text: string }).text : "" } : transcripts.get(2)!);
}

const handlers: Record<string, (a: any) => unknown> = {
  status: (): HostStatus => ({ model, live, params, busy: false }),
  open_model: ({ path }) => fail("model_not_found", `No model at ${path}.`),
  list_tree: () => nodes,
  search: ({ query }) => nodes.filter((n) => (n.name + n.notes + n.tags.join(" ")).toLowerCase().includes(String(query).toLowerCase())),
  start_live: ({ kind, system }) => {
    live = { node: null, kind, dirty: false, token_count: system ? 30 : 0, context_length: 2048,
      transcript: kind === "story" ? { mode: "text", text: "" } : { mode: "chat", messages: system ? [{ role: "system", content: system }] : [] } };
    return live;
  },
  thaw: async ({ node }) => {
    const n = byId(node);
    if (!n) return fail("not_found", "That node no longer exists.");
    if (!n.compatible) return fail("state_model_mismatch", `${n.name} was made with ${n.model_name}.`);
    await sleep(12);
    live = { node, kind: n.kind, dirty: false, token_count: n.token_count, context_length: 2048, transcript: transcriptOf(node) };
    return { node, millis: 9 + (node % 5), reused_tokens: n.token_count, reprocessed_tokens: 0, from_memory: node % 2 === 0, live };
  },
  chat_send: async ({ message, onEvent }) => {
    stopRequested = false;
    onEvent.onmessage({ kind: "progress", done: 12, total: 12 });
    const text = await stream("That is a good question. What do you already know about it, and where does it stop making sense?", onEvent);
    const messages = live.transcript.mode === "chat" ? live.transcript.messages : [];
    live = { ...live, dirty: true, token_count: live.token_count + 40, transcript: { mode: "chat", messages: [...messages, { role: "user", content: message }, { role: "assistant", content: text }] } };
    return { text, tokens: 24, finish: stopRequested ? "cancelled" : "stop_token", prefill_ms: 40, decode_ms: 900, live };
  },
  continue_text: async ({ text, params: s, onEvent }) => {
    stopRequested = false;
    const base = live.transcript.mode === "text" ? live.transcript.text : "";
    const more = s.max_tokens === 0 ? "" : await stream(" The keeper lit a second lamp and held it to the glass.", onEvent);
    live = { ...live, dirty: true, token_count: live.token_count + 20, transcript: { mode: "text", text: base + text + more } };
    return { text: more, tokens: 12, finish: "length", prefill_ms: 20, decode_ms: 500, live };
  },
  story_alternatives: async ({ n, onEvent }) => {
    stopRequested = false;
    const options = [
      " He counted the flashes: three short, one long. Someone out there knew the old code.",
      " It was not a ship. The light rose slowly out of the water and hung there, patient as a moon.",
      " He ran down the hundred and twelve steps for the first time in three winters, still holding the oil can.",
      " By dawn the light was gone, and a rowing boat lay on the shingle below the tower.",
    ];
    const texts = Array.from({ length: n }, (_, i) => options[i % options.length]);
    await Promise.all(texts.map((t, index) => stream(t, onEvent, (text) => ({ index, text }))));
    return texts.map((text, index) => ({ index, text, tokens: text.split(" ").length }));
  },
  keep_alternative: ({ name, keep_others, keepOthers }) => {
    const parent = live.node;
    const kept = mk(nextId++, parent, name, "story", 30);
    const out = [kept];
    if (keepOthers ?? keep_others) out.push(mk(nextId++, parent, `${name} (other)`, "story", 28));
    nodes = [...nodes, ...out];
    live = { ...live, node: kept.id, dirty: false };
    return out;
  },
  freeze: ({ name, kind }) => {
    const n = mk(nextId++, live.node, name, kind, Math.max(1, live.token_count - (byId(live.node ?? -1)?.token_count ?? 0)));
    nodes = [...nodes, n];
    transcripts.set(n.id, live.transcript);
    live = { ...live, node: n.id, dirty: false };
    return n;
  },
  fork: async ({ node, name }) => {
    const parent = byId(node)!;
    const n = mk(nextId++, node, name, parent.kind, 1);
    nodes = [...nodes, n];
    transcripts.set(n.id, transcriptOf(node));
    live = { node: n.id, kind: n.kind, dirty: false, token_count: parent.token_count, context_length: 2048, transcript: transcriptOf(node) };
    return { node: n.id, millis: 4, reused_tokens: parent.token_count, reprocessed_tokens: 0, from_memory: true, live };
  },
  process_document: async ({ name, onEvent }) => {
    stopRequested = false;
    const total = 6400;
    for (let done = 0; done <= total; done += 320) {
      if (stopRequested) return fail("cancelled", "Reading the document was cancelled.");
      onEvent.onmessage({ kind: "progress", done, total });
      await sleep(150);
    }
    const n = mk(nextId++, null, name, "document", total);
    nodes = [...nodes, n];
    return n;
  },
  ask: async ({ question, onEvent }) => {
    stopRequested = false;
    const text = await stream("The paper proposes the Transformer, which relies entirely on attention and drops recurrence.", onEvent);
    lastQA = [{ role: "user", content: question }, { role: "assistant", content: text }];
    return { text, tokens: 18, finish: "stop_token", prefill_ms: 30, decode_ms: 700, live };
  },
  continue_from_answer: () => {
    live = { node: null, kind: "chat", dirty: true, token_count: 11900, context_length: 16384, transcript: { mode: "chat", messages: lastQA } };
    return live;
  },
  stop: () => {
    stopRequested = true;
    return null;
  },
  rename_node: ({ node, name }) => edit(node, { name }),
  set_notes: ({ node, notes }) => edit(node, { notes }),
  add_tag: ({ node, tag }) => edit(node, { tags: [...byId(node)!.tags, tag] }),
  remove_tag: ({ node, tag }) => edit(node, { tags: byId(node)!.tags.filter((t) => t !== tag) }),
  set_pinned: ({ node, pinned }) => edit(node, { pinned }),
  move_node: ({ node, parent }) => edit(node, { parent }),
  preview_delete: ({ node, mode }) => deletion(node, mode, false),
  delete_node: ({ node, mode }) => deletion(node, mode, true),
  export_node: () => 4_200_000,
  export_markdown: () => 2_100,
  import_bundle: () => fail("state_model_mismatch", "This bundle was made with Llama-2-7B-Chat; the open model is TinyLlama-1.1B-Chat-v1.0."),
  set_params: ({ params: s }) => (params = s),
  set_serving: ({ enabled, port }) => ({ url: enabled ? `http://127.0.0.1:${port}/v1` : null }),
  serving: () => ({ url: null }),
  installed_models: () => [],
  opened_models: () => [{ name: model.name, path: model.path, bytes: model.bytes, states: nodes.length }],
  model_catalogue: () => [],
  pull_model: ({ name }) => fail("hub", `${name}: the demo has no Hugging Face Hub.`),
  cancel_pull: () => null,
};

function edit(id: NodeId, patch: Partial<NodeView>) {
  nodes = nodes.map((n) => (n.id === id ? { ...n, ...patch } : n));
  return byId(id);
}

function deletion(id: NodeId, mode: string, apply: boolean) {
  const below = (x: NodeId): NodeId[] => [x, ...nodes.filter((n) => n.parent === x).flatMap((n) => below(n.id))];
  const gone = mode === "subtree" ? below(id) : [id];
  const kids = nodes.filter((n) => n.parent === id).length;
  const freed = nodes.filter((n) => gone.includes(n.id)).reduce((s, n) => s + n.own_bytes, 0);
  if (apply) {
    const parent = byId(id)?.parent ?? null;
    nodes = nodes.filter((n) => !gone.includes(n.id)).map((n) => (n.parent === id ? { ...n, parent } : n));
  }
  return { deleted: gone.length, reparented: mode === "subtree" ? 0 : kids, freed_bytes: freed };
}

export function installDemoBackend(): void {
  mockIPC((cmd, args) => {
    const handler = handlers[cmd];
    if (!handler) return fail("unknown_command", `The demo backend has no ${cmd}.`);
    return handler(args ?? {});
  });
}
