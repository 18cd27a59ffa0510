// Renders a component inside a fresh app state, as App.svelte would provide it.
import { render } from "@testing-library/svelte";
import type { Component } from "svelte";
import { APP_KEY, createAppState, type AppState } from "../lib/context";

export function renderWithApp<P extends Record<string, any>>(
  component: Component<P>,
  props: P = {} as P,
  app: AppState = createAppState(),
) {
  const context = new Map<unknown, unknown>([[APP_KEY, app]]);
  // Svelte's MountOptions type is conditional on P; the props are right by the signature above.
  const result = render(component, { props, context } as Parameters<typeof render<Component<P>>>[1]);
  return { ...result, app };
}

/** An app state already connected to the fake backend, as after start-up. */
export async function readyApp(): Promise<AppState> {
  const app = createAppState();
  await app.session.init();
  return app;
}
