// The admin console: scopes and members, warm-up, outbox, dead letters and health.
// Mounted into console.html's <div id="app">. (Replaces the apps' placeholder.)
import { mount } from "svelte";
import App from "./App.svelte";
import "./console.css";

const target = document.getElementById("app");
if (!target) throw new Error("console.html has no #app element");

export default mount(App, { target });
