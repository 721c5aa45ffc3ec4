{
  "targets": [
    {
      "target_name": "pciem_native",
      "sources": ["pciem_native.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
