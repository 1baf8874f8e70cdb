// ESLint's recommended rules for the widgets' front ends (dlcourse/widgets/js): ES modules that run in the browser.
import js from '@eslint/js';
import globals from 'globals';

export default [
  js.configs.recommended,
  {
    files: ['dlcourse/widgets/js/**/*.js'],
    languageOptions: {ecmaVersion: 2022, sourceType: 'module', globals: globals.browser},
  },
];
