import "../lib/styles.css";
import { mount } from "svelte";
import { requireIdentity } from "../lib/auth";
import App from "./WhiteboardApp.svelte";

const me = requireIdentity();
mount(App, { target: document.getElementById("app")!, props: { me } });
