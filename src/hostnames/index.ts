/** Public face of hostname generation: the Go-template subset, the generation loop and Kuma's defaults. */
export { Template, TemplateError, sprintf, type TemplateData, type TemplateFuncs } from './template.js';
export { generateHostnames, selectorMatches, hostnameErrors, serviceId, type GeneratedNames } from './generate.js';
export { defaultGenerators, DEFAULT_MES_GENERATOR } from './defaults.js';
