#!/usr/bin/env node
// Thin launcher so `meshext` works from a checkout and from an npm install.
import '../dist/src/cli/main.js';
