import "../lib/styles.css";
import { mount } from "svelte";
import { requireIdentity } from "../lib/auth";
import App from "./PollApp.svelte";

const me = requireIdentity();
if (me) mount(App, { target: document.getElementById("app")!, props: { me } });
