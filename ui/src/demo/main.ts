// Entry of demo.html: the real app over the stand-in backend. `?click=id1,id2=text` stages a screen
// for a screenshot: each step clicks the element with that data-testid, or types text into it.
import { installDemoBackend } from "./backend";

installDemoBackend();
await import("../main");

const steps = new URLSearchParams(location.search).get("click")?.split(",").filter(Boolean) ?? [];
for (const id of steps) {
  await new Promise((r) => setTimeout(r, 700));
  const [testid, text] = id.split("=");
  const el = document.querySelector<HTMLElement>(`[data-testid="${testid}"]`);
  if (text !== undefined && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement)) {
    el.value = text;
    el.dispatchEvent(new Event("input", { bubbles: true }));
  } else el?.click();
}
