//! Dev servers that ignore `PORT` (vite, astro, `ng serve`, …): the flags that put them on their port.
