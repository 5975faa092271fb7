import "../lib/styles.css";
import { mount } from "svelte";
import Home from "./Home.svelte";

mount(Home, { target: document.getElementById("app")! });
