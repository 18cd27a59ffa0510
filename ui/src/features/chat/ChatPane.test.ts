import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { GenEvent } from "../../lib/api";
import { deferred, emit, fakeBackend, rejectWith } from "../../test/backend";
import { hostStatus, live, node, reply, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import { settings } from "../../lib/settings.svelte";
import ChatPane from "./ChatPane.svelte";

const primedMessages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Hello." },
];
const primed = live({
  node: 7,
  token_count: 40,
  transcript: {
    mode: "chat",
    messages: primedMessages,
  },
});

describe("ChatPane", () => {
  it("shows tokens as they stream, then the reply's live state", async () => {
    const user = userEvent.setup();
    const gate = deferred();
    const after = live({
      node: 7,
      dirty: true,
      transcript: {
        mode: "chat",
        messages: [
          { role: "user", content: "Tell me a joke" },
          { role: "assistant", content: "Why did the cache freeze?" },
        ],
      },
    });
    const backend = fakeBackend({
      chat_send: async (args) => {
        emit<GenEvent>(args, { kind: "progress", done: 5, total: 10 });
        emit<GenEvent>(args, { kind: "text", text: "Why did " });
        emit<GenEvent>(args, { kind: "text", text: "the cache" });
        await gate.promise;
        return reply({ text: "Why did the cache freeze?", tokens: 6, live: after });
      },
    });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);

    await user.type(screen.getByTestId("composer-input"), "Tell me a joke");
    await user.keyboard("{Control>}{Enter}{/Control}");

    expect(await screen.findByTestId("message-streaming")).toHaveTextContent("Why did the cache");
    expect(screen.getByTestId("message-pending")).toHaveTextContent("Tell me a joke");
    expect(screen.getByTestId("composer-stop")).toBeInTheDocument();
    expect(app.session.busy).toBe(true);
    const [args] = backend.argsOf("chat_send");
    expect(args.message).toBe("Tell me a joke");
    expect(args.params).toEqual(hostStatus().params);

    gate.resolve();
    await waitFor(() => expect(screen.queryByTestId("message-streaming")).not.toBeInTheDocument());
    expect(screen.getByTestId("message-1")).toHaveTextContent("Why did the cache freeze?");
    expect(app.session.live?.dirty).toBe(true);
    expect(app.session.busy).toBe(false);
    expect(app.session.report).toMatch(/generated 6 tokens/);
  });

  it("stops a generation with the Stop button", async () => {
    const user = userEvent.setup();
    const gate = deferred();
    const backend = fakeBackend({
      chat_send: async () => {
        await gate.promise;
        return reply({ finish: "cancelled", tokens: 2 });
      },
      stop: () => {
        gate.resolve();
        return null;
      },
    });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    await user.type(screen.getByTestId("composer-input"), "Go on");
    await user.click(screen.getByTestId("composer-send"));
    await user.click(await screen.findByTestId("composer-stop"));
    expect(backend.argsOf("stop")).toHaveLength(1);
    await waitFor(() => expect(app.session.report).toMatch(/stopped after 2 tokens/));
  });

  it("gives the message back and shows the error when sending fails", async () => {
    const user = userEvent.setup();
    fakeBackend({ chat_send: () => rejectWith("context_full", "The context is full.") });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    await user.type(screen.getByTestId("composer-input"), "Hello");
    await user.click(screen.getByTestId("composer-send"));
    await waitFor(() => expect(app.notices.items.map((n) => n.message)).toEqual(["The context is full."]));
    expect(screen.getByTestId("composer-input")).toHaveValue("Hello");
  });

  it("offers a fork at every message of a frozen chat", async () => {
    const user = userEvent.setup();
    fakeBackend({ status: () => hostStatus({ live: primed }) });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    expect(screen.getByTestId("message-0")).toHaveAttribute("data-role", "system");
    await user.click(screen.getByTestId("fork-here-1"));
    expect(app.ui.dialog).toEqual({ kind: "fork", node: 7, at: { message: 1, char_offset: null } });
  });

  it("regenerates a reply in a new branch: a fork before it, then a new answer", async () => {
    const user = userEvent.setup();
    const branch = live({
      node: 9,
      token_count: 30,
      transcript: { mode: "chat", messages: primedMessages.slice(0, 2) },
    });
    const answered = live({
      node: 9,
      dirty: true,
      transcript: { mode: "chat", messages: [...primedMessages.slice(0, 2), { role: "assistant", content: "Hi there." }] },
    });
    const backend = fakeBackend({
      status: () => hostStatus({ live: primed }),
      list_tree: () => [node({ id: 7, name: "terse" })],
      fork: () => thawReport({ node: 9, live: branch }),
      continue_reply: (args) => {
        emit<GenEvent>(args, { kind: "text", text: "Hi there." });
        return reply({ text: "Hi there.", tokens: 3, live: answered });
      },
    });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    await user.click(screen.getByTestId("regenerate-2"));
    await waitFor(() => expect(backend.argsOf("continue_reply")).toHaveLength(1));
    expect(backend.argsOf("fork")[0]).toMatchObject({ node: 7, at: { message: 1, char_offset: null }, name: "terse · regenerated" });
    // A fresh seed: the saved one would repeat the reply it replaces.
    const [{ params: used }] = backend.argsOf("continue_reply") as [{ params: { seed: number } }];
    expect(used.seed).not.toBe(hostStatus().params.seed);
    expect(await screen.findByTestId("message-2")).toHaveTextContent("Hi there.");
    expect(app.session.live?.node).toBe(9);
  });

  it("edits a message into a new branch and answers the new text", async () => {
    const user = userEvent.setup();
    const branch = live({ node: 9, transcript: { mode: "chat", messages: primedMessages.slice(0, 1) } });
    const backend = fakeBackend({
      status: () => hostStatus({ live: primed }),
      fork: () => thawReport({ node: 9, live: branch }),
      chat_send: () => reply({ text: "Bonjour.", tokens: 2, live: branch }),
    });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    await user.click(screen.getByTestId("edit-1"));
    const input = screen.getByTestId("edit-input-1");
    expect(input).toHaveValue("Hi");
    await user.clear(input);
    await user.type(input, "Salut");
    await user.click(screen.getByTestId("edit-save-1"));
    await waitFor(() => expect(backend.argsOf("chat_send")).toHaveLength(1));
    expect(backend.argsOf("fork")[0]).toMatchObject({ node: 7, at: { message: 0, char_offset: null } });
    expect(backend.argsOf("chat_send")[0].message).toBe("Salut");
  });

  it("deletes a message by branching before it, and generates nothing", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: primed }),
      fork: () => thawReport({ node: 9, live: live({ node: 9 }) }),
    });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    await user.click(screen.getByTestId("delete-2"));
    await waitFor(() => expect(backend.argsOf("fork")).toHaveLength(1));
    expect(backend.argsOf("fork")[0]).toMatchObject({ at: { message: 1, char_offset: null } });
    expect(backend.argsOf("continue_reply")).toHaveLength(0);
    expect(backend.argsOf("chat_send")).toHaveLength(0);
  });

  it("continues the last reply, and copies a message's text", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: { ...primed, dirty: true } }),
      continue_reply: () => reply({ text: "Hello. Again.", tokens: 2, live: primed }),
    });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    expect(screen.queryByTestId("continue-1")).toBeNull();
    await user.click(screen.getByTestId("continue-2"));
    await waitFor(() => expect(backend.argsOf("continue_reply")).toHaveLength(1));
    await user.click(screen.getByTestId("copy-2"));
    expect(await navigator.clipboard.readText()).toBe("Hello.");
  });

  it("shows a reply's function calls and the tool's result, and copies the calls", async () => {
    const user = userEvent.setup();
    const messages = [
      { role: "user", content: "Weather in Tokyo?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "call_0", name: "get_weather", arguments: '{"city": "Tokyo"}' }],
      },
      { role: "tool", content: '{"temp": 21}', tool_call_id: "call_0" },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "call_1", name: "get_time", arguments: "{}" }],
      },
    ];
    fakeBackend({ status: () => hostStatus({ live: live({ node: 7, transcript: { mode: "chat", messages } }) }) });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    const call = screen.getByTestId("tool-call-1-0");
    expect(call).toHaveTextContent("Calls get_weather");
    expect(call.querySelector("pre")?.textContent).toBe('{\n  "city": "Tokyo"\n}');
    expect(screen.getByTestId("message-1").querySelector(".content")).toBeNull();
    expect(screen.getByTestId("message-2")).toHaveTextContent("Tool result");
    expect(screen.getByTestId("message-2")).toHaveTextContent('{"temp": 21}');
    // A reply that is a call is not continued as text.
    expect(screen.queryByTestId("continue-3")).toBeNull();
    await user.click(screen.getByTestId("copy-1"));
    expect(await navigator.clipboard.readText()).toBe('get_weather({"city": "Tokyo"})');
  });

  it("asks for a freeze before a message of unsaved turns can branch", async () => {
    fakeBackend({ status: () => hostStatus({ live: { ...primed, dirty: true } }) });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    for (const id of ["regenerate-2", "edit-1", "delete-1"]) {
      expect(screen.getByTestId(id)).toBeDisabled();
      expect(screen.getByTestId(id)).toHaveAttribute("title", expect.stringContaining("Freeze first"));
    }
    expect(screen.getByTestId("copy-1")).toBeEnabled();
    expect(screen.getByTestId("continue-2")).toBeEnabled();
  });

  it("cannot fork before the chat was frozen once", async () => {
    fakeBackend({ status: () => hostStatus({ live: { ...primed, node: null, dirty: true } }) });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    expect(screen.getByTestId("fork-here-1")).toBeDisabled();
  });

  it("invites priming when the chat is empty", async () => {
    fakeBackend();
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    expect(screen.getByTestId("chat-empty")).toHaveTextContent("Prime the model by chatting");
  });

  it("sends with Enter once the user chose so, and Shift+Enter starts a new line", async () => {
    const user = userEvent.setup();
    settings.setEnterSends(false);
    const backend = fakeBackend({ chat_send: () => reply({ text: "Hello.", tokens: 2, live: primed }) });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    const input = screen.getByTestId("composer-input") as HTMLTextAreaElement;
    await user.type(input, "first line{Enter}");
    expect(backend.argsOf("chat_send")).toHaveLength(0);
    expect(input.value).toBe("first line\n");
    await user.click(screen.getByTestId("composer-enter-sends"));
    expect(settings.enterSends).toBe(true);
    expect(globalThis.localStorage.getItem("freeze-attn.enter-sends")).toBe("1");
    expect(screen.getByTestId("composer-hint")).toHaveTextContent("Shift+Enter new line");
    await user.type(input, "second line{Shift>}{Enter}{/Shift}third");
    expect(backend.argsOf("chat_send")).toHaveLength(0);
    await user.keyboard("{Enter}");
    await waitFor(() => expect(backend.argsOf("chat_send")).toHaveLength(1));
    expect(backend.argsOf("chat_send")[0].message).toBe("first line\nsecond line\nthird");
    settings.setEnterSends(false);
  });

  it("shows how fast each reply of this session was generated", async () => {
    const user = userEvent.setup();
    const after = live({
      node: 7,
      dirty: true,
      transcript: {
        mode: "chat",
        messages: [
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Hello there." },
        ],
      },
    });
    fakeBackend({ chat_send: () => reply({ text: "Hello there.", tokens: 6, decode_ms: 50, live: after }) });
    const app = await readyApp();
    renderWithApp(ChatPane, {}, app);
    await user.type(screen.getByTestId("composer-input"), "Hi");
    await user.click(screen.getByTestId("composer-send"));
    expect(await screen.findByTestId("message-speed-1")).toHaveTextContent("6 tokens · 120.0 tok/s");
    expect(screen.queryByTestId("message-speed-0")).toBeNull();
  });
});
