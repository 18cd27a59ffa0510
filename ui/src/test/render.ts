// Renders a component inside a fresh app state, as App.svelte would provide it.
import { render } from "@testing-library/svelte";
import type { Component, ComponentProps } from "svelte";
import { APP_KEY, createAppState, type AppState } from "../lib/context";

export function renderWithApp<C extends Component<any>>(
  component: C,
  props: ComponentProps<C> = {} as ComponentProps<C>,
  app: AppState = createAppState(),
) {
  const result = render(component, { props, context: new Map([[APP_KEY, app]]) });
  return { ...result, app };
}

/** An app state already connected to the fake backend, as after start-up. */
export async function readyApp(): Promise<AppState> {
  const app = createAppState();
  await app.session.init();
  return app;
}
