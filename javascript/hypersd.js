// sd-webui-hyper-sd: tooltips for the sampler and schedules this extension adds.
// WebUI injects every extension script into every page, possibly more than once: stay idempotent
// and keep every global under the hypersd prefix.
(function () {
    if (window.hypersdHintsInstalled) return;
    window.hypersdHintsInstalled = true;

    var hypersdTitles = {
        "TCD": "Trajectory Consistency Distillation sampler (Hyper-SD's unified LoRA, TCD-LoRA). Its gamma is the 'Eta' setting: 0 = deterministic and detailed, 1 = LCM-like.",
        "Trailing": "Timesteps ending at the last training step (4 steps: 999, 749, 499, 249), as Hyper-SD, SDXL-Lightning and DMD2 were distilled.",
        "Hyper 1-step (t=800)": "One step from timestep 800: the schedule of the Hyper-SDXL 1-step UNet."
    };

    function hypersdAddTitles() {
        if (typeof titles !== "object" || titles === null) return;
        Object.keys(hypersdTitles).forEach(function (key) {
            if (!(key in titles)) titles[key] = hypersdTitles[key];
        });
    }

    if (typeof onUiLoaded === "function") {
        onUiLoaded(hypersdAddTitles);
    } else {
        document.addEventListener("DOMContentLoaded", hypersdAddTitles);
    }
})();
