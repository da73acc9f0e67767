"""The container engine: everything that talks to Docker (connecting, inspecting images,
finding built images, tracked containers). Other stages get images and containers from here;
its input is an engine address, its output BuiltImage records and running containers."""
