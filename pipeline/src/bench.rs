//! Shot-detection benchmark harness (kelp vs bare decode vs PySceneDetect).
